#!/usr/bin/env bash
# make status: the PM2 list, each service's health answer, the billing queues (depth, consumers, the length
# limits of their policies), and the key figures of each service's metrics (loopback endpoints).
set -uo pipefail
source "$(dirname "$0")/lib/common.sh"
for lib in pm2 rabbitmq broker-cluster; do source "$ROOT/scripts/lib/$lib.sh"; done
require_root
load_env

# The topology the apps were started in (make up TOPOLOGY=...): with ha, the broker is the cluster.
topology=single
if pm2_daemon_pid >/dev/null; then topology=$(pm2_app_topology billing_app); fi
topology=${topology:-single}
consumers=1
if [ "$topology" = ha ]; then
  RMQ_NODE=$(broker_any_running) || RMQ_NODE=$(broker_node 1)
  consumers=$(pm2_instances billing_app)
fi

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
for ((instance = 0; instance < consumers; instance++)); do
  health billing "http://$BILLING_STATUS_HOST:$((BILLING_STATUS_PORT + instance))/health"
done

section "queues of vhost $RABBITMQ_VHOST on ${RMQ_NODE:-the local node} (TOPOLOGY=$topology; ready = waiting for billing_app; the broker refreshes these every few seconds)"
rmqctl -q list_queues -p "$RABBITMQ_VHOST" name messages_ready messages_unacknowledged consumers policy 2>&1 |
  awk -F'\t' '{ printf "%-22s %-16s %-26s %-10s %s\n", $1, $2, $3, $4, $5 }' || true
section "their limits (policies of vhost $RABBITMQ_VHOST: past max-length, a publish is refused and the gateway answers 503)"
rmqctl -q list_policies -p "$RABBITMQ_VHOST" 2>&1 |
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
for ((instance = 0; instance < consumers; instance++)); do
  figures billing "http://$BILLING_STATUS_HOST:$((BILLING_STATUS_PORT + instance))/metrics" \
    'billing_orders_stored_total|billing_duplicates_skipped_total|billing_dead_lettered_total|billing_consumer_connected'
done
