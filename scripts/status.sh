#!/usr/bin/env bash
# make status: the PM2 list, each service's health answer, and the depth of the billing queues.
set -uo pipefail
source "$(dirname "$0")/lib/common.sh"
require_root
load_env

section() { printf '\n== %s\n' "$*"; }

section "PM2 ($(command -v pm2 >/dev/null && echo "root's daemon" || echo 'not installed'))"
command -v pm2 >/dev/null && pm2 list

health() {
  local name=$1 url=$2 answer
  answer=$(curl -sS -m 5 -w ' (HTTP %{http_code})' "$url" 2>&1) || true
  printf '%-10s %s\n           %s\n' "$name" "$url" "$answer"
}
section "health"
health gateway "http://$GATEWAY_HOST:$GATEWAY_PORT/health"
health inventory "http://$INVENTORY_HOST:$INVENTORY_PORT/health"
health billing "http://$BILLING_STATUS_HOST:$BILLING_STATUS_PORT/health"

section "queues of vhost $RABBITMQ_VHOST (ready = waiting for billing_app)"
rabbitmqctl -q list_queues -p "$RABBITMQ_VHOST" name messages_ready messages_unacknowledged 2>&1 |
  column -t || true
