#!/usr/bin/env bash
# make down: stop the platform's apps in PM2. Databases, queues and their data are kept;
# `make up` starts the apps again.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
require_root
if ! command -v pm2 >/dev/null; then log "PM2 is not installed: nothing runs"; exit 0; fi
(cd "$ROOT" && pm2 stop config.yaml >/dev/null 2>&1) || true
pm2 save --force >/dev/null 2>&1 || true
log "stopped api_gateway, inventory_app and billing_app (data kept; make up starts them again)"
