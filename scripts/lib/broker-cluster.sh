# shellcheck shell=bash
# TOPOLOGY=ha's broker on one machine: three RabbitMQ nodes clustered by RabbitMQ itself (peer discovery from a
# fixed list of nodes, `classic_config`), billing_queue a quorum queue with a replica on each. Node i is
# crud-broker-i@localhost, AMQP on 127.0.0.1 at the i-th port of HA_BROKER_PORTS, its distribution port that port
# + 20000, all on loopback; its data and log are RabbitMQ's own for its name (/var/lib/rabbitmq/mnesia/<node>,
# /var/log/rabbitmq/<node>.log), its configuration /etc/rabbitmq/crud-broker/<node>.conf. The machine's own node
# (rabbit@<host>, the one-machine topology's) is not part of it. Source after common.sh and rabbitmq.sh.

broker_count() { tr , '\n' <<<"$HA_BROKER_PORTS" | grep -c .; }
broker_indexes() { seq 1 "$(broker_count)"; }
broker_node() { echo "crud-broker-$1@localhost"; }
broker_port() { cut -d, -f"$1" <<<"$HA_BROKER_PORTS" | tr -d ' '; }
broker_conf_file() { echo "/etc/rabbitmq/crud-broker/$(broker_node "$1").conf"; }
broker_pid_file() { echo "/var/lib/rabbitmq/mnesia/$(broker_node "$1").pid"; }

# broker_addresses: RABBITMQ_HOST for the services, every node of the cluster.
broker_addresses() {
  local i addresses=()
  for i in $(broker_indexes); do addresses+=("127.0.0.1:$(broker_port "$i")"); done
  (IFS=,; echo "${addresses[*]}")
}

broker_conf() {
  local j
  echo "# Written by crud-master (scripts/lib/broker-cluster.sh): node $1 of TOPOLOGY=ha's broker."
  echo "listeners.tcp.1 = 127.0.0.1:$(broker_port "$1")"
  echo "cluster_formation.peer_discovery_backend = classic_config"
  for j in $(broker_indexes); do echo "cluster_formation.classic_config.nodes.$j = $(broker_node "$j")"; done
  # A node cut off from the majority stops serving rather than carry on alone: clients go to the majority.
  echo "cluster_partition_handling = pause_minority"
}

# broker_vm_up I: the node's Erlang VM answers (its RabbitMQ application may still be booting, or stopped).
broker_vm_up() { rabbitmqctl -n "$(broker_node "$1")" -q status >/dev/null 2>&1; }
broker_running() { rabbitmq-diagnostics -n "$(broker_node "$1")" -q check_running >/dev/null 2>&1; }

# broker_start I: start node I unless it runs (a node stopped with stop_app gets start_app); returns at once.
broker_start() {
  local node port
  node=$(broker_node "$1") port=$(broker_port "$1")
  [[ $port =~ ^[0-9]+$ ]] || die "HA_BROKER_PORTS: '$port' is not a port"
  broker_running "$1" && return 0
  if broker_vm_up "$1"; then
    changed "starting the RabbitMQ application of node $node again"
    rabbitmqctl -n "$node" -q start_app >/dev/null
    return 0
  fi
  mkdir -p /etc/rabbitmq/crud-broker
  if file_ensure "$(broker_conf_file "$1")" "$(broker_conf "$1")"; then
    log "wrote $(broker_conf_file "$1")"
  fi
  changed "starting RabbitMQ node $node (AMQP 127.0.0.1:$port)"
  # The wrapper runs the node as the rabbitmq user and keeps these. The node is named @localhost, so epmd and its
  # distribution port are on 127.0.0.1 whatever the machine's own node has (rabbitmq-env.conf follows the host
  # name, which may resolve to 127.0.1.1).
  RABBITMQ_NODENAME=$node RABBITMQ_CONFIG_FILE=$(broker_conf_file "$1") RABBITMQ_DIST_PORT=$((port + 20000)) \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" ERL_EPMD_ADDRESS=127.0.0.1 \
    rabbitmq-server -detached
}

broker_await() {
  local node
  node=$(broker_node "$1")
  wait_until 120 "RabbitMQ node $node to boot" broker_vm_up "$1"
  rabbitmqctl -n "$node" -q await_startup --timeout 120 >/dev/null
}

broker_stop() {
  broker_vm_up "$1" || return 0
  log "stopping RabbitMQ node $(broker_node "$1")"
  rabbitmqctl -n "$(broker_node "$1")" -q stop >/dev/null
}

# broker_kill I: SIGKILL node I's Erlang VM, as a crash would.
broker_kill() {
  local pid
  pid=$(cat "$(broker_pid_file "$1")" 2>/dev/null) || die "node $(broker_node "$1") has no pid file"
  # A pid file left by a node killed before may name another process by now.
  tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "RABBITMQ_NODENAME=$(broker_node "$1")" ||
    die "node $(broker_node "$1") is not running (pid $pid is not it)"
  log "killing RabbitMQ node $(broker_node "$1") (pid $pid) with SIGKILL"
  kill -KILL "$pid"
}

# broker_running_nodes: how many nodes node I sees running in its cluster.
broker_running_nodes() { rabbitmqctl -n "$(broker_node "$1")" -q eval 'length(rabbit_nodes:all_running()).'; }
broker_clustered() { [ "$(broker_running_nodes 1)" = "$(broker_count)" ]; }

# broker_cluster_exists: the nodes have data: they were clustered before.
broker_cluster_exists() { [ -d "/var/lib/rabbitmq/mnesia/$(broker_node 1)" ]; }

# broker_cluster_up: every node running and clustered. On a new machine node 1 starts first, and the others join
# it as they boot. A cluster that exists has all its stopped nodes started at once: a node that was not the last
# to stop waits at boot for one that was, whichever that is.
broker_cluster_up() {
  local i
  rmq_install
  if ! broker_cluster_exists; then
    broker_start 1
    broker_await 1
  fi
  for i in $(broker_indexes); do broker_start "$i"; done
  for i in $(broker_indexes); do broker_await "$i"; done
  wait_until 60 "the $(broker_count) RabbitMQ nodes to form one cluster" broker_clustered
}

broker_cluster_down() {
  local i
  for i in $(broker_indexes); do broker_stop "$i"; done
}

# broker_any_running: the name of a running node (vhosts, users and policies are the whole cluster's).
broker_any_running() {
  local i
  for i in $(broker_indexes); do
    if broker_running "$i"; then broker_node "$i"; return 0; fi
  done
  return 1
}

# broker_leader VHOST QUEUE: the index of the node that leads the quorum queue.
broker_leader() {
  local leader
  leader=$(rabbitmqctl -n "$(broker_any_running)" -q list_queues -p "$1" name leader --no-table-headers |
    awk -F'\t' -v queue="$2" '$1 == queue { print $2 }')
  [[ $leader =~ ^crud-broker-([0-9]+)@localhost$ ]] || die "no leader found for $2 in vhost $1 (got '$leader')"
  echo "${BASH_REMATCH[1]}"
}

# broker_replicas VHOST QUEUE: the nodes holding a replica of the quorum queue, one per line.
broker_replicas() {
  rabbitmqctl -n "$(broker_any_running)" -q list_queues -p "$1" name members --no-table-headers |
    awk -F'\t' -v queue="$2" '$1 == queue { print $2 }' | tr -d '[]' | tr , '\n' | tr -d ' '
}
