#!/usr/bin/env bash
# make test-hosts: the three-VM deployment tested where no VM can boot. Network namespaces stand for
# gateway-vm, inventory-vm, billing-vm (their .env addresses, one bridge) and the host machine; each
# loads its role's firewall file and runs its role's provisioning steps and services. Then the tests
# of tests/hosts/; then the same with CRUD_MASTER_TOPOLOGY=ha (billing-vm-2 and billing-vm-3 too) and its
# tests; and everything is torn down, whatever happened.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
for lib in postgres rabbitmq python pm2 services firewall vm hosts; do source "$ROOT/scripts/lib/$lib.sh"; done

require_root
load_env
# What the VMs would install, and Vagrant itself for `vagrant validate`.
apt_install_missing iproute2 nftables curl vagrant
pg_install
rmq_install
pm2_install
venv_ensure "$ROOT/tests"

trap hosts_down EXIT
export CRUD_MASTER_TOPOLOGY=three-vm
log "building the three hosts"
hosts_up
log "testing the three-host topology"
(cd "$ROOT" && tests/.venv/bin/python -m pytest -q -p no:cacheprovider tests/hosts --ignore tests/hosts/test_billing_cluster.py)

# The Vagrantfile's other topology: billing-vm-2 and billing-vm-3 join billing-vm's RabbitMQ cluster. The hosts of
# the first are taken down while their node names are still the ones they run with.
hosts_down
export CRUD_MASTER_TOPOLOGY=ha
log "building the five hosts of CRUD_MASTER_TOPOLOGY=ha"
hosts_up
log "testing CRUD_MASTER_TOPOLOGY=ha"
(cd "$ROOT" && tests/.venv/bin/python -m pytest -q -p no:cacheprovider tests/hosts/test_billing_cluster.py)
