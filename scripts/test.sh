#!/usr/bin/env bash
# make test: every test suite, against real PostgreSQL and RabbitMQ on loopback, installed and started by the
# scripts themselves. Nothing here touches the data of a `make up` platform: the suites use databases and a
# vhost of their own (the *_TEST_* settings of .env), and the system tests a whole platform instance of their
# own (TEST_PM2_HOME, the TEST_* ports).
#
#   1. the internal library's suite (srcs/common), then each service's own suite, each in its own venv
#      (inventory, gateway, billing);
#   2. the system tests: the platform under PM2, driven through the gateway (newman, HTTP, pm2 stop/start);
#      then the same with TOPOLOGY=ha (a three-node broker cluster, two consumers) and its chaos tests;
#   3. the three-host topology on network namespaces (scripts/test-hosts.sh, also `make test-hosts`).
#
# `bash scripts/test.sh system hosts` runs only the named suites (common inventory gateway billing system ha hosts).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
for lib in postgres rabbitmq python pm2; do source "$ROOT/scripts/lib/$lib.sh"; done

require_root
load_env

# run_pytest SERVICE: the service's (or the library's) own suite in its own venv.
run_pytest() {
  local dir=$ROOT/srcs/$1
  venv_ensure "$dir" "$dir/requirements-dev.txt"
  log "testing $1"
  (cd "$dir" && .venv/bin/python -m pytest -q -p no:cacheprovider tests)
}

# The internal library's own suite; its queue declaration test uses RABBITMQ_TEST_VHOST.
test_common() {
  require_vars RABBITMQ_TEST_VHOST
  rmq_ensure_account "$RABBITMQ_TEST_VHOST"
  run_pytest common
}

test_inventory() {
  require_vars INVENTORY_DB_USER INVENTORY_DB_PASSWORD INVENTORY_TEST_DB_NAME
  pg_ensure_role "$INVENTORY_DB_USER" "$INVENTORY_DB_PASSWORD"
  pg_drop_database "$INVENTORY_TEST_DB_NAME"
  pg_ensure_database "$INVENTORY_TEST_DB_NAME" "$INVENTORY_DB_USER"
  run_pytest inventory-app
}

# The gateway's suite runs in front of the real inventory (its own venv, on INVENTORY_TEST_DB_NAME, which its
# fixtures migrate) and publishes to RABBITMQ_TEST_VHOST; its front tests run nginx, as the gateway's front does.
test_gateway() {
  require_vars INVENTORY_DB_USER INVENTORY_DB_PASSWORD INVENTORY_TEST_DB_NAME RABBITMQ_TEST_VHOST
  apt_install_missing nginx-light
  rmq_ensure_account "$RABBITMQ_TEST_VHOST"
  pg_ensure_role "$INVENTORY_DB_USER" "$INVENTORY_DB_PASSWORD"
  pg_ensure_database "$INVENTORY_TEST_DB_NAME" "$INVENTORY_DB_USER"
  venv_ensure "$ROOT/srcs/inventory-app"
  run_pytest api-gateway
}

# The billing suite, on BILLING_TEST_DB_NAME (dropped and re-created: every run starts from an empty schema,
# which its fixtures migrate) and RABBITMQ_TEST_VHOST. Its failure tests stop and restart PostgreSQL and
# RabbitMQ themselves, and always leave them running.
test_billing() {
  require_vars BILLING_DB_USER BILLING_DB_PASSWORD BILLING_TEST_DB_NAME RABBITMQ_TEST_VHOST
  rmq_ensure_account "$RABBITMQ_TEST_VHOST"
  pg_ensure_role "$BILLING_DB_USER" "$BILLING_DB_PASSWORD"
  pg_drop_database "$BILLING_TEST_DB_NAME"
  pg_ensure_database "$BILLING_TEST_DB_NAME" "$BILLING_DB_USER"
  run_pytest billing-app
}

# The whole platform, started by the very `make up` script under a PM2 daemon, ports, databases and vhost of
# its own, then driven from outside by tests/system. The instance is killed on the way out, whatever happens.
test_instance_settings() {
  require_vars TEST_PM2_HOME TEST_GATEWAY_PORT TEST_INVENTORY_PORT TEST_BILLING_STATUS_PORT \
    TEST_GATEWAY_METRICS_PORT TEST_INVENTORY_METRICS_PORT INVENTORY_TEST_DB_NAME BILLING_TEST_DB_NAME RABBITMQ_TEST_VHOST INVENTORY_HOST
  export PM2_HOME=$TEST_PM2_HOME
  export GATEWAY_PORT=$TEST_GATEWAY_PORT INVENTORY_PORT=$TEST_INVENTORY_PORT
  export INVENTORY_URL=http://$INVENTORY_HOST:$TEST_INVENTORY_PORT BILLING_STATUS_PORT=$TEST_BILLING_STATUS_PORT
  export GATEWAY_METRICS_PORT=$TEST_GATEWAY_METRICS_PORT INVENTORY_METRICS_PORT=$TEST_INVENTORY_METRICS_PORT
  export INVENTORY_DB_NAME=$INVENTORY_TEST_DB_NAME BILLING_DB_NAME=$BILLING_TEST_DB_NAME
  export RABBITMQ_VHOST=$RABBITMQ_TEST_VHOST
}

test_system() {
  test_instance_settings
  pm2_install
  newman_install
  # The audit types `sudo -i -u postgres` and `sudo pm2 ...`; Swagger UI is tried in Debian's Chromium.
  apt_install_missing sudo chromium
  venv_ensure "$ROOT/tests"
  start_test_instance
  log "testing the platform (tests/system)"
  (cd "$ROOT" && tests/.venv/bin/python -m pytest -q -p no:cacheprovider tests/system)
}

# TOPOLOGY=ha: the same instance, its broker the three clustered nodes of scripts/broker.sh (the test vhost on
# them) and two consumers, then the chaos tests (tests/ha), which kill and stop nodes and consumers.
test_ha() {
  test_instance_settings
  require_vars TEST_HA_GATEWAY_PORT TEST_HA_INVENTORY_PORT TEST_HA_GATEWAY_METRICS_PORT TEST_HA_INVENTORY_METRICS_PORT
  export TOPOLOGY=ha HA_GATEWAY_PORT=$TEST_HA_GATEWAY_PORT HA_INVENTORY_PORT=$TEST_HA_INVENTORY_PORT
  export HA_GATEWAY_METRICS_PORT=$TEST_HA_GATEWAY_METRICS_PORT HA_INVENTORY_METRICS_PORT=$TEST_HA_INVENTORY_METRICS_PORT
  pm2_install
  venv_ensure "$ROOT/tests"
  start_test_instance
  log "testing TOPOLOGY=ha under failures (tests/ha)"
  # Each test logs its counts (orders, attempts by status, GETs): the README's HA figures come from these lines.
  (cd "$ROOT" && tests/.venv/bin/python -m pytest -q -p no:cacheprovider -o log_cli=true --log-cli-level=INFO \
    --durations=3 tests/ha)
}

# start_test_instance: the instance of the exported settings, started by `make up`'s own script from nothing (a run
# cut short may have left one behind), and killed on the way out whatever happens.
start_test_instance() {
  pm2 kill >/dev/null 2>&1 || true
  trap system_down EXIT
  log "starting the test platform instance (TOPOLOGY=${TOPOLOGY:-single}): gateway :$GATEWAY_PORT, PM2_HOME=$PM2_HOME"
  bash "$ROOT/scripts/up.sh" 2>&1 | sed 's/^/    /'
}

system_down() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    log "the system tests failed: the last lines of the instance's logs ($PM2_HOME/logs)"
    tail -n 40 "$PM2_HOME"/logs/*.log >&2 2>/dev/null || true
  fi
  pm2 kill >/dev/null 2>&1 || true
  exit $rc
}

test_hosts() { bash "$ROOT/scripts/test-hosts.sh"; }

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(common inventory gateway billing system ha hosts)
for suite in "${suites[@]}"; do
  declare -F "test_$suite" >/dev/null || die "unknown suite '$suite' (common inventory gateway billing system ha hosts)"
done
pg_ensure_running
rmq_install
rmq_listen_on 127.0.0.1
rmq_ensure_running
for suite in "${suites[@]}"; do
  # In a subshell: a suite's exports (the system instance's settings) and its trap stay with it.
  ("test_$suite")
done
log "passed: ${suites[*]}"
