# shellcheck shell=bash
# The per-role nftables rules of scripts/firewall/. Addresses and ports are passed from the environment
# (.env) with `nft -D`, so the rules files hold no address. Source after common.sh.

# firewall_files ROLE: the rules files of that role, in order: its own, and on the nodes of CRUD_MASTER_TOPOLOGY=ha's
# RabbitMQ cluster (billing-vm, and the broker VMs, whose rules are otherwise billing-vm's) the cluster's.
firewall_files() {
  case $1 in
    gateway | inventory) echo "$1.nft" ;;
    billing) if [ "${CRUD_MASTER_TOPOLOGY:-three-vm}" = ha ]; then echo billing.nft cluster.nft; else echo billing.nft; fi ;;
    broker) echo billing.nft cluster.nft ;;
    *) die "no firewall rules for role '$1' (gateway, inventory, billing, broker)" ;;
  esac
}

# firewall_load ROLE: (re)load crud-master's table for that role, atomically (its files in one transaction);
# idempotent.
firewall_load() {
  local files=() defines=() name file
  for file in $(firewall_files "$1"); do files+=("$ROOT/scripts/firewall/$file"); done
  for name in $(cat "${files[@]}" | grep -o '\$[A-Z_0-9]*' | tr -d '$' | sort -u); do
    require_vars "$name"
    defines+=(-D "$name=${!name}")
  done
  printf 'include "%s"\n' "${files[@]}" | nft "${defines[@]}" -f -
}
