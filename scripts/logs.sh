#!/usr/bin/env bash
# make logs: follow the logs of every app (Ctrl-C to leave).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
require_root
exec pm2 logs --lines 50
