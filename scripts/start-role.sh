#!/usr/bin/env bash
# At every boot of a VM, run by root's PM2 unit (scripts/lib/vm.sh: vm_pm2_at_boot): root's PM2 daemon and the
# role's app of config.yaml online with the role's settings, whatever was stopped before the reboot. The
# same step that ends the role's provisioning (role_start).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
for lib in pm2 vm; do source "$ROOT/scripts/lib/$lib.sh"; done

role=${1:?usage: $0 gateway|inventory|billing}
require_root
load_env
role_env "$role"
role_start "$role"
