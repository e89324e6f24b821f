#!/usr/bin/env bash
# inventory-vm: PostgreSQL with movies_db, on loopback only (the inventory is its one client), and the
# inventory service on INVENTORY_PORT (8080), reachable only from gateway-vm. Run as root by `vagrant up` /
# `vagrant provision`; idempotent.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
for lib in postgres rabbitmq python pm2 services firewall vm; do source "$ROOT/scripts/lib/$lib.sh"; done

# The code on the VM's disk (/opt/crud-master), .env's settings, the inventory listening on the private address.
vm_begin inventory
# The inventory binds to the private address even if it starts before that address is up at boot.
vm_allow_early_bind
# PostgreSQL's inventory role and movies_db, the venv, the migrations; inventory_app online in root's PM2.
role_up inventory
# PM2 at boot (with SIGTERM as its stop signal), log rotation, and the firewall: SSH, and 8080 from the
# gateway only.
vm_finish inventory
