# shellcheck shell=bash
# The per-role nftables rules of scripts/firewall/. Addresses and ports are passed from the environment
# (.env) with `nft -D`, so the rules files hold no address. Source after common.sh.

# firewall_load ROLE: (re)load crud-master's table for that role, atomically; idempotent.
firewall_load() {
  local role=$1 file=$ROOT/scripts/firewall/$1.nft defines=() name
  [ -f "$file" ] || die "no firewall rules for role '$role' ($file)"
  for name in $(grep -o '\$[A-Z_]*' "$file" | tr -d '$' | sort -u); do
    require_vars "$name"
    defines+=(-D "$name=${!name}")
  done
  nft "${defines[@]}" -f "$file"
}
