#!/usr/bin/env bash
# make bench: bring up a platform instance of its own (bench/bench.env: own PM2 home, ports, databases, vhost),
# run every scenario of bench/run.py against it, print the table, and tear the instance down whatever happens.
# Installs what it needs itself (wrk, nginx, HAProxy for the inventory-instances rows, the bench venv). Data of
# the bench databases is kept between runs (the 1,000,000 movies load once); a `make up` platform is never touched.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$ROOT/scripts/lib/python.sh"

require_root
# The bench settings first, then .env for the credentials (load_env never overrides what is set).
set -a
# shellcheck source=../bench/bench.env
source "$ROOT/bench/bench.env"
set +a
load_env
[ "$PM2_HOME" != "$HOME/.pm2" ] || die "the bench must run under its own PM2 home, not $HOME/.pm2"

apt_install_missing wrk nginx-light haproxy
venv_ensure "$ROOT/bench"

bench_down() {
  local rc=$?
  log "stopping the bench instance (PM2_HOME=$PM2_HOME)"
  pm2 kill >/dev/null 2>&1 || true
  exit $rc
}
trap bench_down EXIT
trap 'exit 130' INT TERM

log "starting the bench instance: gateway :$GATEWAY_PORT, inventory :$INVENTORY_PORT, $INVENTORY_DB_NAME, $BILLING_DB_NAME, vhost $RABBITMQ_VHOST"
mkdir -p "$ROOT/bench/results"
bash "$ROOT/scripts/up.sh" >"$ROOT/bench/results/up.log" 2>&1 || { cat "$ROOT/bench/results/up.log" >&2; die "the bench instance did not come up"; }
"$ROOT/bench/.venv/bin/python" "$ROOT/bench/run.py" "$@"
