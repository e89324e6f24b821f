# shellcheck shell=bash
# RabbitMQ: install when missing, start when stopped, create the vhosts and the user from .env.
# Source after common.sh.

rmq_ready() { rabbitmq-diagnostics -q check_running >/dev/null 2>&1; }

rmq_install() { apt_install_missing rabbitmq-server; }

rmq_start() {
  rmq_ready && return 0
  changed "starting RabbitMQ"
  if has_systemd; then
    systemctl enable --now rabbitmq-server >/dev/null
  else
    # -detached returns before the node is up; await_startup blocks until it is (or fails). epmd, which the
    # node starts, reads its address from its environment (systemd's epmd.socket has its own drop-in).
    ERL_EPMD_ADDRESS=127.0.0.1 rabbitmq-server -detached
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

# rabbitmq-env.conf: epmd and the node's distribution port on loopback (only rabbitmqctl, on the node's own
# machine, talks to them).
RMQ_ENV_CONF='# Written by crud-master (scripts/lib/rabbitmq.sh): epmd and the distribution port on loopback.
ERL_EPMD_ADDRESS=127.0.0.1
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"'

# rmq_listen_on ADDRESS...: AMQP on these addresses only (loopback on one machine; loopback and the private
# address on billing-vm), epmd and the distribution port on loopback. RabbitMQ is restarted when this changes
# what it listens on.
rmq_listen_on() {
  local moved=
  if file_ensure /etc/rabbitmq/rabbitmq.conf "$(rmq_listeners_conf "$@")"; then moved=1; fi
  if file_ensure /etc/rabbitmq/rabbitmq-env.conf "$RMQ_ENV_CONF"; then moved=1; fi
  if has_systemd && file_ensure /etc/systemd/system/epmd.socket.d/crud-master.conf '[Socket]
ListenStream=
ListenStream=127.0.0.1:4369'; then
    systemctl daemon-reload
    moved=1
  fi
  [ -n "$moved" ] || return 0
  changed "RabbitMQ: AMQP on $*, epmd and the distribution port on loopback"
  rmq_ready || return 0
  if has_systemd; then
    systemctl stop rabbitmq-server epmd.service epmd.socket
    systemctl start epmd.socket rabbitmq-server
  else
    rabbitmqctl -q stop >/dev/null
    epmd -kill >/dev/null 2>&1 || true
    rmq_start
  fi
  wait_until 60 "RabbitMQ to accept connections" rmq_ready
}

rmq_ensure_vhost() {
  rabbitmqctl -q list_vhosts name | grep -qxF "$1" && return 0
  changed "creating RabbitMQ vhost $1"
  rabbitmqctl -q add_vhost "$1" >/dev/null
}

# rmq_ensure_user NAME PASSWORD: the password goes through stdin (never on a command line) and is
# kept equal to .env's; the broker's default 'guest' account is removed. The users are listed once: each
# rabbitmqctl call starts an Erlang VM, seconds on a slow machine.
rmq_ensure_user() {
  local users
  users=$(rabbitmqctl -q list_users | cut -f1)
  if grep -qxF "$1" <<<"$users"; then
    printf '%s' "$2" | rabbitmqctl -q change_password "$1" >/dev/null
  else
    changed "creating RabbitMQ user $1"
    printf '%s' "$2" | rabbitmqctl -q add_user "$1" >/dev/null
  fi
  if grep -qxF guest <<<"$users"; then
    changed "removing RabbitMQ's default guest account"
    rabbitmqctl -q delete_user guest >/dev/null
  fi
}

# rmq_grant USER VHOST: full rights on that vhost only.
rmq_grant() { rabbitmqctl -q set_permissions -p "$2" "$1" '.*' '.*' '.*' >/dev/null; }

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
  current=$(rabbitmqctl -q list_policies -p "$1" --no-table-headers 2>/dev/null | awk -F'\t' -v name="$2" '$2 == name')
  [ "$current" = "$1"$'\t'"$2"$'\t'"$3"$'\tqueues\t'"$4"$'\t0' ] && return 0
  changed "RabbitMQ: policy $2 on $3 in $1: $4"
  rabbitmqctl -q set_policy -p "$1" --apply-to queues --priority 0 "$2" "$3" "$4" >/dev/null
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
