#!/usr/bin/env bash
# make status: the PM2 list, each service's health answer, and the depth of the billing queues.
set -uo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$ROOT/scripts/lib/pm2.sh"
require_root
load_env

section() { printf '\n== %s\n' "$*"; }

section "PM2 (PM2_HOME=$(pm2_home))"
# `pm2 list` would spawn a daemon when none runs.
if pm2_daemon_pid >/dev/null; then pm2 list; else echo "no PM2 daemon runs: make up starts it"; fi

health() {
  local name=$1 url=$2 answer
  answer=$(curl -sS -m 5 -w ' (HTTP %{http_code})' "$url" 2>&1) || true
  printf '%-10s %s\n           %s\n' "$name" "$url" "$answer"
}
section "health"
health gateway "http://$GATEWAY_HOST:$GATEWAY_PORT/health"
health inventory "http://$INVENTORY_HOST:$INVENTORY_PORT/health"
health billing "http://$BILLING_STATUS_HOST:$BILLING_STATUS_PORT/health"

section "queues of vhost $RABBITMQ_VHOST (ready = waiting for billing_app; the broker refreshes these every few seconds)"
rabbitmqctl -q list_queues -p "$RABBITMQ_VHOST" name messages_ready messages_unacknowledged 2>&1 |
  awk -F'\t' '{ printf "%-22s %-16s %s\n", $1, $2, $3 }' || true
