#!/usr/bin/env bash
# TOPOLOGY=ha's broker, by hand (and by the chaos tests): three RabbitMQ nodes clustered on loopback
# (scripts/lib/broker-cluster.sh says where each one lives).
#
#   bash scripts/broker.sh up | down         every node started and clustered | every node stopped
#   bash scripts/broker.sh start|stop|kill I node I (1..3) started | stopped cleanly | killed with SIGKILL
#   bash scripts/broker.sh leader VHOST      the index of the node leading billing_queue in VHOST
#   bash scripts/broker.sh status            the cluster as its first running node sees it
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
for lib in rabbitmq broker-cluster; do source "$ROOT/scripts/lib/$lib.sh"; done

require_root
load_env
require_vars HA_BROKER_PORTS RABBITMQ_QUEUE

node_index() {
  [[ ${1-} =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le "$(broker_count)" ] ||
    die "a node is 1 to $(broker_count), not '${1-}'"
  echo "$1"
}

case ${1-} in
  start | stop | kill) node=$(node_index "${2-}") ;;
esac
case ${1-} in
  up) broker_cluster_up ;;
  down) broker_cluster_down ;;
  start) broker_start "$node"; broker_await "$node" ;;
  stop) broker_stop "$node" ;;
  kill) broker_kill "$node" ;;
  leader) [ -n "${2-}" ] || die "usage: broker.sh leader VHOST"; broker_leader "$2" "$RABBITMQ_QUEUE" ;;
  status) rabbitmqctl -n "$(broker_any_running)" cluster_status ;;
  *) die "usage: broker.sh up|down|status|start I|stop I|kill I|leader VHOST" ;;
esac
