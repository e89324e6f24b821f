#!/usr/bin/env bash
# One role of the three-host test, run inside that role's network namespace by scripts/lib/hosts.sh: the
# steps of its VM's provisioning script (scripts/provision-<role>-vm.sh) minus those only a real VM has (the
# code copy under /opt, systemd units). RabbitMQ's listening addresses, which rmq_listen_on sets on billing-vm, are
# given to the role's own instance when scripts/lib/hosts.sh starts it.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
for lib in postgres rabbitmq python pm2 services firewall vm; do source "$ROOT/scripts/lib/$lib.sh"; done

role=${1:?usage: $0 gateway|inventory|billing|broker}
require_root
load_env
role_env "$role"
role_up "$role"
firewall_load "$role"
role_done "$role"
