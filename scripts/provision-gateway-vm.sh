#!/usr/bin/env bash
# gateway-vm: the API gateway on GATEWAY_PORT (3000), open to the host; it reaches the inventory on
# inventory-vm and RabbitMQ on billing-vm. Run as root by `vagrant up` / `vagrant provision`; idempotent.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
for lib in postgres rabbitmq python pm2 services firewall vm; do source "$ROOT/scripts/lib/$lib.sh"; done

# The code on the VM's disk (/opt/crud-master), .env's settings, the other VMs' addresses.
vm_begin gateway
# nginx (the gateway's front) and the gateway's venv (it has no database and no broker of its own);
# api_gateway_front and api_gateway online in root's PM2.
role_up gateway
# PM2 at boot (with SIGTERM as its stop signal), log rotation, and the firewall: SSH and the gateway port.
vm_finish gateway
