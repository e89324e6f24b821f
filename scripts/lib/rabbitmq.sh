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
    # -detached returns before the node is up; await_startup blocks until it is (or fails).
    rabbitmq-server -detached
    wait_until 60 "the RabbitMQ node to boot" rabbitmqctl -q status
    rabbitmqctl -q await_startup
  fi
  wait_until 60 "RabbitMQ to accept connections" rmq_ready
}

rmq_ensure_running() { rmq_install; rmq_start; }

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
