#!/usr/bin/env bash
# billing-vm: RabbitMQ (vhost and user of .env, guest removed, queues bounded) reachable only from gateway-vm,
# PostgreSQL with orders_db on loopback, and the billing consumer (with CRUD_MASTER_TOPOLOGY=ha, the first node of
# the RabbitMQ cluster, reachable from the broker VMs too, and one consumer per node). Run as root by `vagrant up` /
# `vagrant provision`; idempotent.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
for lib in postgres rabbitmq python pm2 services firewall vm; do source "$ROOT/scripts/lib/$lib.sh"; done

# The code on the VM's disk (/opt/crud-master), .env's settings, RabbitMQ and orders_db on this host.
vm_begin billing
# RabbitMQ: AMQP on loopback (the consumer) and the private address (the gateway), epmd and the distribution
# port on loopback; it may bind the private address before that is up at boot.
vm_allow_early_bind
rmq_install
# CRUD_MASTER_TOPOLOGY=ha: the node of the cluster the broker VMs join (their names, the shared cookie).
vm_billing_cluster billing
rmq_listen_on 127.0.0.1 "$BILLING_VM_IP"
# RabbitMQ and PostgreSQL installed and started, the vhost and user, orders_db, the venv, the migrations;
# billing_app online in root's PM2.
role_up billing
# PM2 at boot (with SIGTERM as its stop signal), log rotation, and the firewall: SSH, and AMQP from the
# gateway only.
vm_finish billing
