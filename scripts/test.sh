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
