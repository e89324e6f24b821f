#!/usr/bin/env bash
# make logs: follow the logs of every app (Ctrl-C to leave).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$ROOT/scripts/lib/pm2.sh"
require_root
# `pm2 logs` would spawn a daemon when none runs.
pm2_daemon_pid >/dev/null || die "no PM2 daemon runs (PM2_HOME=$(pm2_home)): make up starts the platform"
exec pm2 logs --lines 50
