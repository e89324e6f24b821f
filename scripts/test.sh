#!/usr/bin/env bash
# make test: every service's suite against real PostgreSQL and RabbitMQ on loopback, each on
# databases and a vhost of its own (the *_TEST_* settings of .env), never the platform's data.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$ROOT/scripts/lib/postgres.sh"
source "$ROOT/scripts/lib/python.sh"

require_root
load_env

# run_pytest SERVICE: the service's own suite in its own venv.
run_pytest() {
  local dir=$ROOT/srcs/$1
  venv_ensure "$dir" "$dir/requirements-dev.txt"
  log "testing $1"
  (cd "$dir" && .venv/bin/python -m pytest -q -p no:cacheprovider tests)
}

test_inventory() {
  require_vars INVENTORY_DB_USER INVENTORY_DB_PASSWORD INVENTORY_TEST_DB_NAME
  pg_ensure_role "$INVENTORY_DB_USER" "$INVENTORY_DB_PASSWORD"
  pg_drop_database "$INVENTORY_TEST_DB_NAME"
  pg_ensure_database "$INVENTORY_TEST_DB_NAME" "$INVENTORY_DB_USER"
  run_pytest inventory-app
}

pg_ensure_running
test_inventory

source "$ROOT/scripts/lib/rabbitmq.sh"

# The gateway's suite runs in front of the real inventory (its own venv and migrations, on
# INVENTORY_TEST_DB_NAME, which the inventory suite may have dropped) and publishes to RABBITMQ_TEST_VHOST.
test_gateway() {
  require_vars INVENTORY_DB_USER INVENTORY_DB_PASSWORD INVENTORY_TEST_DB_NAME RABBITMQ_TEST_VHOST
  rmq_ensure_running
  rmq_ensure_account "$RABBITMQ_TEST_VHOST"
  pg_ensure_role "$INVENTORY_DB_USER" "$INVENTORY_DB_PASSWORD"
  pg_ensure_database "$INVENTORY_TEST_DB_NAME" "$INVENTORY_DB_USER"
  local inventory=$ROOT/srcs/inventory-app
  venv_ensure "$inventory"
  (cd "$inventory" && INVENTORY_DB_NAME=$INVENTORY_TEST_DB_NAME .venv/bin/alembic upgrade head)
  run_pytest api-gateway
}

test_gateway

# The billing suite, on BILLING_TEST_DB_NAME (dropped and re-created: every run starts from an empty schema,
# which its fixtures migrate) and RABBITMQ_TEST_VHOST. Its failure tests stop and restart PostgreSQL and
# RabbitMQ themselves, and always leave them running.
test_billing() {
  source "$ROOT/scripts/lib/rabbitmq.sh"
  require_vars BILLING_DB_USER BILLING_DB_PASSWORD BILLING_TEST_DB_NAME RABBITMQ_TEST_VHOST
  rmq_ensure_running
  rmq_ensure_account "$RABBITMQ_TEST_VHOST"
  pg_ensure_role "$BILLING_DB_USER" "$BILLING_DB_PASSWORD"
  pg_drop_database "$BILLING_TEST_DB_NAME"
  pg_ensure_database "$BILLING_TEST_DB_NAME" "$BILLING_DB_USER"
  run_pytest billing-app
}

test_billing
