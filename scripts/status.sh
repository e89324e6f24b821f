#!/usr/bin/env bash
# make status: the PM2 list, each service's health answer, the billing queues (depth, consumers, the length
# limits of their policies), and the key figures of each service's metrics (loopback endpoints).
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
rabbitmqctl -q list_queues -p "$RABBITMQ_VHOST" name messages_ready messages_unacknowledged consumers policy 2>&1 |
  awk -F'\t' '{ printf "%-22s %-16s %-26s %-10s %s\n", $1, $2, $3, $4, $5 }' || true
section "their limits (policies of vhost $RABBITMQ_VHOST: past max-length, a publish is refused and the gateway answers 503)"
rabbitmqctl -q list_policies -p "$RABBITMQ_VHOST" 2>&1 |
  awk -F'\t' '{ printf "%-28s %-28s %s\n", $2, $3, $5 }' || true

# The counters an operator watches, summed over every worker; the full set is at each URL.
figures() {
  local name=$1 url=$2 pattern=$3 answer
  printf '%-10s %s\n' "$name" "$url"
  if ! answer=$(curl -sS -m 5 "$url" 2>&1); then
    printf '           %s\n' "$answer"
    return
  fi
  grep -E "^($pattern)" <<<"$answer" | grep -v '_created' | sed 's/^/           /' || true
}
section "metrics (Prometheus text format; requests by route, method and status)"
figures gateway "http://$GATEWAY_METRICS_HOST:$GATEWAY_METRICS_PORT/metrics" \
  'http_requests_total|gateway_inventory_failures_total|gateway_order_publishes_total'
figures inventory "http://$INVENTORY_METRICS_HOST:$INVENTORY_METRICS_PORT/metrics" \
  'http_requests_total|inventory_database_errors_total'
figures billing "http://$BILLING_STATUS_HOST:$BILLING_STATUS_PORT/metrics" \
  'billing_orders_stored_total|billing_duplicates_skipped_total|billing_dead_lettered_total|billing_consumer_connected'
