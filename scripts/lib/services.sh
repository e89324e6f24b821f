# shellcheck shell=bash
# What each role of the platform needs on its machine, as steps shared by `make up` (one machine,
# every role) and the per-VM provisioning scripts (one role each). Source after common.sh and the
# postgres, rabbitmq, python and pm2 helpers. Every step is idempotent.

# alembic_upgrade SERVICE: apply the service's pending migrations (its env.py reads the settings).
# `alembic current` marks the database's revision "(head)" when nothing is pending: one start of Python and
# SQLAlchemy to find out, not two (each takes seconds on a slow machine).
alembic_upgrade() {
  local dir=$ROOT/srcs/$1 current
  current=$(cd "$dir" && .venv/bin/alembic current 2>/dev/null)
  [[ $current == *"(head)"* ]] && return 0
  changed "migrating the $1 database to revision $(cd "$dir" && .venv/bin/alembic heads | awk '{print $1}')"
  (cd "$dir" && .venv/bin/alembic upgrade head)
}

inventory_provision() {
  require_vars INVENTORY_DB_USER INVENTORY_DB_PASSWORD INVENTORY_DB_NAME
  pg_ensure_running
  pg_ensure_role "$INVENTORY_DB_USER" "$INVENTORY_DB_PASSWORD"
  pg_ensure_database "$INVENTORY_DB_NAME" "$INVENTORY_DB_USER"
  venv_ensure "$ROOT/srcs/inventory-app"
  alembic_upgrade inventory-app
}

# broker_ensure: the topology's broker running: this machine's own RabbitMQ node, or with TOPOLOGY=ha the three
# clustered nodes of broker-cluster.sh (sourced by whoever sets TOPOLOGY=ha), to which RMQ_NODE then points the
# account and policy steps.
broker_ensure() {
  if [ "${TOPOLOGY:-single}" = ha ]; then
    broker_cluster_up
    RMQ_NODE=$(broker_any_running)
    export RMQ_NODE
  else
    rmq_ensure_running
  fi
}

billing_provision() {
  require_vars BILLING_DB_USER BILLING_DB_PASSWORD BILLING_DB_NAME RABBITMQ_VHOST
  broker_ensure
  rmq_ensure_account "$RABBITMQ_VHOST"
  rmq_bound_billing_queues "$RABBITMQ_VHOST"
  pg_ensure_running
  pg_ensure_role "$BILLING_DB_USER" "$BILLING_DB_PASSWORD"
  pg_ensure_database "$BILLING_DB_NAME" "$BILLING_DB_USER"
  venv_ensure "$ROOT/srcs/billing-app"
  alembic_upgrade billing-app
}

# A broker VM (CRUD_MASTER_TOPOLOGY=ha: billing-vm-2, billing-vm-3): a RabbitMQ node of billing-vm's cluster, with a
# replica of billing_queue and of its dead-letter queue. The vhost, user and policies are the cluster's: billing-vm's.
broker_provision() {
  require_vars RABBITMQ_VHOST RABBITMQ_QUEUE
  rmq_ensure_running
  rmq_join_cluster rabbit@billing-vm
  rmq_grow_quorum_queues "$RABBITMQ_VHOST" "^${RABBITMQ_QUEUE}(\\.dead)?\$"
}

# The gateway: its venv, and nginx for its front (api_gateway_front runs nginx itself, from its own
# configuration; the distribution's nginx service, with its default site on port 80, is not ours and stays off).
gateway_provision() {
  apt_install_missing nginx-light
  nginx_service_off
  venv_ensure "$ROOT/srcs/api-gateway"
}

# distribution_service_off SERVICE PID_FILE OWNER: the distribution's own SERVICE stays off, since OWNER runs one of
# its own (under systemd: disabled and stopped; without it: the daemon of PID_FILE, if any, sent SIGTERM).
distribution_service_off() {
  if has_systemd; then
    if systemctl is-enabled -q "$1" 2>/dev/null || systemctl is-active -q "$1" 2>/dev/null; then
      changed "$1: the distribution's own service off ($3 runs its own)"
      systemctl disable -q --now "$1"
    fi
  elif [ -f "$2" ] && kill -0 "$(cat "$2")" 2>/dev/null; then
    changed "$1: the distribution's own service stopped ($3 runs its own)"
    kill "$(cat "$2")"
  fi
}

nginx_service_off() { distribution_service_off nginx /run/nginx.pid "the gateway's front"; }
# TOPOLOGY=ha's balancer is PM2's load_balancer app.
haproxy_service_off() { distribution_service_off haproxy /run/haproxy.pid "PM2's load_balancer"; }

