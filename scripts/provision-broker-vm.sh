#!/usr/bin/env bash
# billing-vm-2, billing-vm-3 (CRUD_MASTER_TOPOLOGY=ha): a RabbitMQ node that joins billing-vm's cluster and holds a
# replica of billing_queue; AMQP on loopback and the private address (the gateway and billing-vm's consumers), epmd
# and the distribution port reachable from the other nodes only. Run as root by `vagrant up` / `vagrant
# provision`; idempotent.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
for lib in postgres rabbitmq python pm2 services firewall vm; do source "$ROOT/scripts/lib/$lib.sh"; done

# The code on the VM's disk (/opt/crud-master), .env's settings, this VM's address (VM_IP, from the Vagrantfile).
vm_begin broker
vm_allow_early_bind
rmq_install
# The other nodes' names, the cluster's cookie; then the node listens where its clients and peers reach it.
vm_billing_cluster broker
rmq_listen_on 127.0.0.1 "$VM_IP"
# The node joins billing-vm's cluster (waiting for it when the VMs are provisioned at once), and takes a replica.
role_up broker
# The firewall (no PM2: nothing of ours runs here but RabbitMQ, the distribution's service).
vm_finish broker
