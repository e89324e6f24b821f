# shellcheck shell=bash
# RabbitMQ: install when missing, start when stopped, create the vhosts and the user from .env.
# Source after common.sh.

rmq_ready() { rabbitmq-diagnostics -q check_running >/dev/null 2>&1; }

# rmqctl ARGS...: rabbitmqctl on the node RMQ_NODE names (a node of TOPOLOGY=ha's cluster), else on this
# machine's own node. Vhosts, users and policies are the cluster's: any running node of it takes them.
rmqctl() { rabbitmqctl ${RMQ_NODE:+-n "$RMQ_NODE"} "$@"; }

rmq_install() { apt_install_missing rabbitmq-server; }

rmq_start() {
  rmq_ready && return 0
  changed "starting RabbitMQ"
  if has_systemd; then
    systemctl enable --now rabbitmq-server >/dev/null
  else
    # -detached returns before the node is up; await_startup blocks until it is (or fails). epmd, which the
    # node starts, reads its addresses from its environment (systemd's epmd.socket has its own drop-in).
    ERL_EPMD_ADDRESS=$(rmq_epmd_addresses) rabbitmq-server -detached
    wait_until 60 "the RabbitMQ node to boot" rabbitmqctl -q status
    rabbitmqctl -q await_startup
  fi
  wait_until 60 "RabbitMQ to accept connections" rmq_ready
}

rmq_ensure_running() { rmq_install; rmq_start; }

# rmq_listeners_conf ADDRESS...: rabbitmq.conf with AMQP listening on these addresses only.
rmq_listeners_conf() {
  local address n=0
  echo "# Written by crud-master (scripts/lib/rabbitmq.sh): AMQP on these addresses only."
  for address in "$@"; do
    n=$((n + 1))
    echo "listeners.tcp.$n = $address:${RABBITMQ_PORT:-5672}"
  done
}

# rmq_node_host: the host part of the node's name: RABBITMQ_NODENAME's when set, else the short host name (RabbitMQ's
# default, rabbit@<short host name>).
rmq_node_host() {
  if [ -n "${RABBITMQ_NODENAME:-}" ]; then echo "${RABBITMQ_NODENAME#*@}"; else hostname -s; fi
}

# rmq_node_address: the loopback address the node's host name resolves to. The node, as it starts, and rabbitmqctl
# reach epmd and the distribution port there: 127.0.0.1 on most machines, but 127.0.2.1 on Vagrant's Debian boxes,
# whose /etc/hosts maps the VM's name to it (epmd on 127.0.0.1 alone: "epmd error for host billing-vm: address",
# and the node does not start). A name that resolves to no loopback address gets 127.0.0.1, and rmq_env_conf leaves
# epmd and the distribution port as RabbitMQ has them.
rmq_node_address() {
  local address
  address=$(getent ahostsv4 "$(rmq_node_host)" | awk 'NR == 1 { print $1 }')
  case $address in
    127.*) echo "$address" ;;
    *) echo 127.0.0.1 ;;
  esac
}

rmq_node_name_on_loopback() {
  getent ahostsv4 "$(rmq_node_host)" | awk 'NR == 1 { loopback = ($1 ~ /^127\./) } END { exit !loopback }'
}

# rmq_epmd_addresses: where epmd listens: loopback, the node's own loopback address when it is another one, and
# with RMQ_CLUSTER_ADDRESS (a node of a cluster across machines) the private address its peers reach it at.
rmq_epmd_addresses() {
  local address addresses=127.0.0.1
  address=$(rmq_node_address)
  if [ "$address" != 127.0.0.1 ]; then addresses+=",$address"; fi
  echo "$addresses${RMQ_CLUSTER_ADDRESS:+,$RMQ_CLUSTER_ADDRESS}"
}

# rmq_env_conf: rabbitmq-env.conf with epmd and the node's distribution port on loopback (only rabbitmqctl, on the
# node's own machine, talks to them), or for a node of a cluster across machines (RMQ_CLUSTER_ADDRESS) epmd on
# loopback and its private address and the distribution port on every address: Erlang binds it to one address or
# all, and the node is reached at both (by rabbitmqctl at its name's loopback address, by its peers at the private
# one). The firewall admits only the peers (scripts/firewall/cluster.nft).
rmq_env_conf() {
  if [ -n "${RMQ_CLUSTER_ADDRESS:-}" ]; then
    echo "# Written by crud-master (scripts/lib/rabbitmq.sh): epmd and the distribution port for a cluster's peers."
  else
    echo "# Written by crud-master (scripts/lib/rabbitmq.sh): epmd and the distribution port on loopback."
  fi
  if ! rmq_node_name_on_loopback; then
    echo "# $(rmq_node_host) resolves to no loopback address: epmd and the distribution port stay as RabbitMQ has them."
    return 0
  fi
  echo "ERL_EPMD_ADDRESS=$(rmq_epmd_addresses)"
  if [ -n "${RMQ_CLUSTER_ADDRESS:-}" ]; then
    echo "# Its peers reach epmd and the distribution port at $RMQ_CLUSTER_ADDRESS (the firewall admits only them)."
  else
    echo "SERVER_ADDITIONAL_ERL_ARGS=\"-kernel inet_dist_use_interface {$(rmq_node_address | tr . ,)}\""
  fi
}

# The drop-in of systemd's epmd.socket (Debian's erlang starts epmd from it): the same addresses.
rmq_epmd_socket_conf() {
  local address
  printf '[Socket]\nListenStream=\n'
  for address in $(rmq_epmd_addresses | tr , ' '); do
    printf 'ListenStream=%s:4369\n' "$address"
  done
}

# rmq_listen_on ADDRESS...: AMQP on these addresses only (loopback on one machine; loopback and the private
# address on billing-vm), epmd and the distribution port on loopback. RabbitMQ is restarted when this changes
# what it listens on.
rmq_listen_on() {
  local moved=
  if file_ensure /etc/rabbitmq/rabbitmq.conf "$(rmq_listeners_conf "$@")"; then moved=1; fi
  if rmq_cookie_ensure; then moved=1; fi
  if file_ensure /etc/rabbitmq/rabbitmq-env.conf "$(rmq_env_conf)"; then moved=1; fi
  if has_systemd && rmq_node_name_on_loopback &&
    file_ensure /etc/systemd/system/epmd.socket.d/crud-master.conf "$(rmq_epmd_socket_conf)"; then
    systemctl daemon-reload
    moved=1
  fi
  [ -n "$moved" ] || return 0
  changed "RabbitMQ: AMQP on $*, epmd and the distribution port on loopback"
  # Restarted even when it is not running: systemd may be restarting a node that fails on the old files, and an
  # epmd started before keeps listening where it did.
  if has_systemd; then
    systemctl stop rabbitmq-server epmd.service epmd.socket
    systemctl start epmd.socket rabbitmq-server
  else
    if rmq_ready; then rabbitmqctl -q stop >/dev/null; fi
    epmd -kill >/dev/null 2>&1 || true
    rmq_start
  fi
  wait_until 60 "RabbitMQ to accept connections" rmq_ready
}

# rmq_cookie_ensure: with RMQ_ERLANG_COOKIE (the nodes of a cluster across machines), the node's Erlang cookie is it,
# so the nodes trust each other; the package's own random cookie otherwise. True when it changed (the node must
# restart to take it).
rmq_cookie_ensure() {
  local cookie=/var/lib/rabbitmq/.erlang.cookie
  [ -n "${RMQ_ERLANG_COOKIE:-}" ] || return 1
  [ "$(cat "$cookie" 2>/dev/null)" != "$RMQ_ERLANG_COOKIE" ] || return 1
  changed "RabbitMQ: the cluster's Erlang cookie (.env)"
  (umask 077 && printf '%s' "$RMQ_ERLANG_COOKIE" >"$cookie")
  chown rabbitmq:rabbitmq "$cookie"
  chmod 400 "$cookie"
}

# rmq_cluster_member NODE: this node and NODE are in one cluster.
rmq_cluster_member() { [ "$(rmqctl -q eval "lists:member('$1', rabbit_nodes:all()).")" = true ]; }

# rmq_join_cluster NODE: this node, new or not, joins NODE's cluster (once NODE answers: the VMs of a topology may be
# provisioned at once), as RabbitMQ's clustering guide has it: stop_app, reset, join_cluster, start_app. A node that
# is in it already is left alone, and stays in it across restarts.
rmq_join_cluster() {
  rmq_cluster_member "$1" && return 0
  log "waiting for RabbitMQ node $1 to answer, to join its cluster"
  wait_until 3600 "RabbitMQ node $1 to answer" rabbitmqctl -q -n "$1" status
  changed "RabbitMQ: this node joins the cluster of $1"
  rmqctl -q stop_app >/dev/null
  rmqctl -q reset >/dev/null
  rmqctl -q join_cluster "$1" >/dev/null
  rmqctl -q start_app >/dev/null
  rmqctl -q await_startup >/dev/null
}

# rmq_grow_quorum_queues VHOST PATTERN: this node holds a replica of every quorum queue of VHOST whose name matches
# PATTERN (a queue declared before the node joined has replicas on the nodes that were there then only).
rmq_grow_quorum_queues() {
  local node lacking
  node=$(rmqctl -q eval 'node().' | tr -d "'")
  # The pattern through the environment: awk -v would take its backslashes for escapes.
  lacking=$(rmqctl -q list_queues -p "$1" name type members --no-table-headers | PATTERN=$2 awk -F'\t' -v node="$node" \
    '$1 ~ ENVIRON["PATTERN"] && $2 == "quorum" && index($3, node "]") + index($3, node ",") == 0 { print $1 }')
  [ -n "$lacking" ] || return 0
  changed "RabbitMQ: a replica of $(echo $lacking | tr ' ' ,) on $node"
  rabbitmq-queues ${RMQ_NODE:+-n "$RMQ_NODE"} -q grow "$node" all --vhost-pattern "^$1\$" --queue-pattern "$2" \
    >/dev/null
}

rmq_ensure_vhost() {
  rmqctl -q list_vhosts name | grep -qxF "$1" && return 0
  changed "creating RabbitMQ vhost $1"
  rmqctl -q add_vhost "$1" >/dev/null
}

# rmq_ensure_user NAME PASSWORD: the password goes through stdin (never on a command line) and is
# kept equal to .env's; the broker's default 'guest' account is removed. The users are listed once: each
# rabbitmqctl call starts an Erlang VM, seconds on a slow machine.
rmq_ensure_user() {
  local users
  users=$(rmqctl -q list_users | cut -f1)
  if grep -qxF "$1" <<<"$users"; then
    printf '%s' "$2" | rmqctl -q change_password "$1" >/dev/null
  else
    changed "creating RabbitMQ user $1"
    printf '%s' "$2" | rmqctl -q add_user "$1" >/dev/null
  fi
  if grep -qxF guest <<<"$users"; then
    changed "removing RabbitMQ's default guest account"
    rmqctl -q delete_user guest >/dev/null
  fi
}

# rmq_grant USER VHOST: full rights on that vhost only.
rmq_grant() { rmqctl -q set_permissions -p "$2" "$1" '.*' '.*' '.*' >/dev/null; }

# rmq_ensure_account VHOST: vhost + the user of .env with rights on it.
rmq_ensure_account() {
  require_vars RABBITMQ_USER RABBITMQ_PASSWORD
  rmq_ensure_vhost "$1"
  rmq_ensure_user "$RABBITMQ_USER" "$RABBITMQ_PASSWORD"
  rmq_grant "$RABBITMQ_USER" "$1"
}

# rmq_ensure_policy VHOST NAME PATTERN DEFINITION: a policy on the queues whose name matches PATTERN, kept equal to
# DEFINITION (JSON). A policy, not a queue argument: changing it never makes a declaration differ from an existing
# queue's, so the limits can be changed on a running platform.
rmq_ensure_policy() {
  local current
  current=$(rmqctl -q list_policies -p "$1" --no-table-headers 2>/dev/null | awk -F'\t' -v name="$2" '$2 == name')
  [ "$current" = "$1"$'\t'"$2"$'\t'"$3"$'\tqueues\t'"$4"$'\t0' ] && return 0
  changed "RabbitMQ: policy $2 on $3 in $1: $4"
  rmqctl -q set_policy -p "$1" --apply-to queues --priority 0 "$2" "$3" "$4" >/dev/null
}

# rmq_bound_billing_queues VHOST: billing_queue and its dead-letter queue hold at most the lengths of .env. A full
# billing_queue nacks a publish (its x-overflow is reject-publish), so the gateway answers 503 instead of letting
# the queue grow without end; a full dead-letter queue refuses too, and what cannot be dead-lettered then stays in
# billing_queue (its dead-letter strategy is at-least-once), which is never lost and shows in `make status`.
rmq_bound_billing_queues() {
  require_vars RABBITMQ_QUEUE BILLING_QUEUE_MAX_LENGTH BILLING_DEAD_LETTER_MAX_LENGTH
  rmq_ensure_policy "$1" billing-queue-length "^${RABBITMQ_QUEUE}\$" \
    "{\"max-length\":$BILLING_QUEUE_MAX_LENGTH,\"overflow\":\"reject-publish\"}"
  rmq_ensure_policy "$1" billing-dead-letter-length "^${RABBITMQ_QUEUE}\\.dead\$" \
    "{\"max-length\":$BILLING_DEAD_LETTER_MAX_LENGTH,\"overflow\":\"reject-publish\"}"
}
