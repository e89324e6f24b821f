#!/usr/bin/env bash
# Load the nftables rules of one VM role (gateway, inventory, billing, broker) with the addresses of .env.
# Run by provisioning and, at every boot, by the crud-master-firewall systemd unit.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$ROOT/scripts/lib/firewall.sh"
require_root
[ $# -eq 1 ] || die "usage: $0 gateway|inventory|billing|broker"
load_env
firewall_load "$1"
