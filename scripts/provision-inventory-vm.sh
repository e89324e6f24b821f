#!/usr/bin/env bash
# inventory-vm: PostgreSQL with movies_db and the inventory service on INVENTORY_PORT (8080), both
# reachable only from gateway-vm. Run as root by `vagrant up` / `vagrant provision`; idempotent.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
for lib in postgres rabbitmq python pm2 services firewall vm; do source "$ROOT/scripts/lib/$lib.sh"; done

# The code on the VM's disk (/opt/crud-master), .env's settings, the inventory listening on the private address.
vm_begin inventory
# PostgreSQL and the inventory bind to the private address even if they start before it is up at boot.
vm_allow_early_bind
# PostgreSQL also listens on the private address, for the gateway's address only (the firewall agrees).
pg_ensure_running
pg_listen_on "$INVENTORY_VM_IP" "$INVENTORY_DB_NAME" "$INVENTORY_DB_USER" "$GATEWAY_VM_IP"
# PostgreSQL's inventory role and movies_db, the venv, the migrations; inventory_app online in root's PM2.
role_up inventory
# PM2 at boot (with SIGTERM as its stop signal), log rotation, and the firewall: SSH, 8080 and 5432 from
# the gateway only.
vm_finish inventory
