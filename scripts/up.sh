#!/usr/bin/env bash
# make up: the whole platform on this machine, under root's PM2. Installs what is missing
# (PostgreSQL, RabbitMQ, Node.js + PM2, the venvs), provisions, migrates, starts, and waits until
# the gateway says every part is up. A second run changes nothing and says so.
#
# TOPOLOGY=ha (`make up TOPOLOGY=ha`): the broker is three RabbitMQ nodes clustered on loopback
# (HA_BROKER_PORTS, scripts/broker.sh) instead of this machine's own node, and two billing consumers compete on
# its queue (`pm2 scale billing_app 2`).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
for lib in postgres rabbitmq broker-cluster python pm2 services; do source "$ROOT/scripts/lib/$lib.sh"; done

require_root
load_env
require_vars GATEWAY_HOST GATEWAY_PORT
apt_install_missing curl ca-certificates
# Where clients reach the platform, in either topology.
gateway=http://$GATEWAY_HOST:$GATEWAY_PORT

export TOPOLOGY=${TOPOLOGY:-single}

# queued_orders TOPOLOGY: the orders waiting in billing_queue on that topology's broker (fails when it is away).
queued_orders() {
  local node=
  if [ "$1" = ha ]; then node=$(broker_any_running) || return 1; fi
  RMQ_NODE=$node rmqctl -q list_queues -p "$RABBITMQ_VHOST" name messages --no-table-headers 2>/dev/null |
    awk -F'\t' -v queue="$RABBITMQ_QUEUE" '$1 == queue { found = 1; print $2 } END { exit !found }'
}

# Before anything is installed or started: the apps keep the broker they were started with, so a platform of
# another topology must be stopped first (`make down`), and its broker must have no order left to store: the
# two topologies' brokers are different ones, and what waits on the old one would wait for ever.
if command -v pm2 >/dev/null && pm2_daemon_pid >/dev/null; then
  pm2_same_topology inventory_app billing_app api_gateway api_gateway_front load_balancer
  previous=$(pm2_app_topology billing_app)
  if [ -n "$previous" ] && [ "$previous" != "$TOPOLOGY" ]; then
    waiting=$(queued_orders "$previous") ||
      die "the platform ran with TOPOLOGY=$previous, whose broker is away: \`make up TOPOLOGY=$previous\` first, so that its consumers store what it holds"
    [ "$waiting" = 0 ] ||
      die "$waiting orders wait in $RABBITMQ_QUEUE on the TOPOLOGY=$previous broker: \`make up TOPOLOGY=$previous\` stores them; switch once it is empty"
    # The stopped apps keep the environment they were started with (the other broker, other ports): they are
    # started afresh below.
    changed "PM2: the apps of TOPOLOGY=$previous removed, to start them with TOPOLOGY=$TOPOLOGY's settings"
    (cd "$ROOT" && pm2 delete config.yaml >/dev/null 2>&1) || true
  fi
fi

case $TOPOLOGY in
  single)
    # One machine: RabbitMQ is for this machine only.
    rmq_install
    rmq_listen_on 127.0.0.1
    ;;
  ha)
    require_vars HA_BROKER_PORTS HA_GATEWAY_PORT HA_INVENTORY_PORT HA_GATEWAY_METRICS_PORT HA_INVENTORY_METRICS_PORT \
      INVENTORY_HOST INVENTORY_PORT
    # The services reach every node; each starts at one of its own and fails over to the others.
    RABBITMQ_HOST=$(broker_addresses)
    # The balancer takes the addresses clients and the gateways know (GATEWAY_PORT, INVENTORY_URL); the
    # instances behind it listen on the HA ports plus their PM2 instance number, the gateways' fronts told by
    # the PROXY protocol who each client is.
    export RABBITMQ_HOST LB_GATEWAY_HOST=$GATEWAY_HOST LB_GATEWAY_PORT=$GATEWAY_PORT \
      LB_INVENTORY_HOST=$INVENTORY_HOST LB_INVENTORY_PORT=$INVENTORY_PORT HA_INSTANCES=2 \
      GATEWAY_PORT=$HA_GATEWAY_PORT INVENTORY_PORT=$HA_INVENTORY_PORT GATEWAY_METRICS_PORT=$HA_GATEWAY_METRICS_PORT \
      INVENTORY_METRICS_PORT=$HA_INVENTORY_METRICS_PORT GATEWAY_BEHIND_PROXY_PROTOCOL=true
    apt_install_missing haproxy
    haproxy_service_off
    ;;
  *) die "TOPOLOGY is single (the default) or ha, not '$TOPOLOGY'" ;;
esac
inventory_provision
billing_provision
gateway_provision
pm2_install
pm2_daemon_ensure
pm2_start_apps inventory_app billing_app api_gateway api_gateway_front
# Two of each behind the balancer with TOPOLOGY=ha (each application before its front), one otherwise.
instances=1
if [ "$TOPOLOGY" = ha ]; then instances=2; fi
pm2_scale "$instances" inventory_app billing_app api_gateway api_gateway_front
if [ "$TOPOLOGY" = ha ]; then pm2_start_apps load_balancer; fi

wait_until 90 "the gateway to report every dependency up ($gateway/health)" curl -fsS -o /dev/null "$gateway/health"

if [ ${#CHANGES[@]} -eq 0 ]; then
  log "nothing to do: everything was already installed, provisioned and online"
fi
cat <<MSG

crud-master is up (TOPOLOGY=$TOPOLOGY).
  gateway      $gateway            (pm2 list shows api_gateway_front, api_gateway, inventory_app, billing_app)
  Swagger UI   $gateway/docs
  try          curl -s $gateway/api/movies/
               curl -s -X POST $gateway/api/movies/ -H 'Content-Type: application/json' \\
                    -d '{"title": "A new movie", "description": "Very short description"}'
               curl -s -X POST $gateway/api/billing/ -H 'Content-Type: application/json' \\
                    -d '{"user_id": "3", "number_of_items": "5", "total_amount": "180"}'
  watch        make status     (apps, health, queues, metrics)     make logs    (follow the logs)
  stop         make down       (data is kept)
MSG
