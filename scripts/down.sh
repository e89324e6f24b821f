#!/usr/bin/env bash
# make down: stop the platform's apps in PM2. Databases, queues and their data are kept;
# `make up` starts the apps again.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$ROOT/scripts/lib/pm2.sh"
require_root
# Any pm2 command would spawn a daemon when none runs; with no daemon, nothing runs to stop.
if ! command -v pm2 >/dev/null || ! pm2_daemon_pid >/dev/null; then
  log "no PM2 daemon runs (PM2_HOME=$(pm2_home)): nothing to stop"
  exit 0
fi
(cd "$ROOT" && pm2 stop config.yaml >/dev/null)
pm2 save --force >/dev/null
log "stopped api_gateway_front, api_gateway, inventory_app, billing_app (and load_balancer with TOPOLOGY=ha): data kept; make up starts them again"
