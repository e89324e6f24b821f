# shellcheck shell=bash
# The three-VM topology rebuilt on one machine with network namespaces, for `make test-hosts`:
# gateway-vm, inventory-vm and billing-vm get their .env addresses on one bridge, plus an "outside"
# host at the host machine's host-only address; with CRUD_MASTER_TOPOLOGY=ha, billing-vm-2 and billing-vm-3 too.
# Each loads its own firewall file and runs its role's services bound as on its VM: its own PostgreSQL or
# RabbitMQ instance, its own PM2 daemon. Source after common.sh and vm.sh. Nothing here touches the machine's own
# PostgreSQL, RabbitMQ or PM2.

HOSTS_DIR=/tmp/crud-master-hosts
HOSTS_BRIDGE=cmbr0
PG_BIN() { echo "/usr/lib/postgresql/$(pg_version)/bin"; }

# Each host is named after its VM without "-vm": gateway, inventory, billing, billing-2, billing-3.
hosts_all="gateway inventory billing billing-2 billing-3"
# host_brokers: the hosts of the broker VMs (CRUD_MASTER_TOPOLOGY=ha), none otherwise.
host_brokers() { if [ "$(vm_topology)" = ha ]; then echo billing-2 billing-3; fi; }
# shellcheck disable=SC2046 # one word per host
hosts_machines() { echo gateway inventory billing $(host_brokers); }
# shellcheck disable=SC2046
host_rabbitmq_hosts() { echo billing $(host_brokers); }
host_vm() { case $1 in billing-[0-9]) echo "billing-vm-${1#billing-}" ;; *) echo "$1-vm" ;; esac; }
host_role() { case $1 in billing-[0-9]) echo broker ;; *) echo "$1" ;; esac; }

# host_ns HOST: the namespace standing for that VM.
host_ns() { echo "cm-$1"; }

host_ip() {
  case $1 in
    gateway) echo "$GATEWAY_VM_IP" ;; inventory) echo "$INVENTORY_VM_IP" ;; billing) echo "$BILLING_VM_IP" ;;
    billing-2) echo "$BILLING_VM_2_IP" ;; billing-3) echo "$BILLING_VM_3_IP" ;; outside) echo "$HOST_ONLY_HOST_IP" ;;
  esac
}

# host_node HOST: its RabbitMQ node's name: rabbit@<its VM> in a cluster, as on the VMs (the namespace's
# /etc/hosts names the VMs: hosts_names), else rabbit@localhost.
host_node() {
  if [ "$(vm_topology)" = ha ]; then echo "rabbit@$(host_vm "$1")"; else echo rabbit@localhost; fi
}

# The environment each host's processes run with: their own PM2 daemon, the admin tools pointed at the host's own
# PostgreSQL socket and RabbitMQ node, and its address (a broker VM's provisioning reads it).
host_env() {
  echo "PM2_HOME=$HOSTS_DIR/$1/pm2 PGHOST=$HOSTS_DIR/$1/pg RABBITMQ_NODENAME=$(host_node "$1")" \
    "GATEWAY_RUNTIME_DIR=$HOSTS_DIR/$1/run VM_IP=$(host_ip "$1")"
}

# in_host HOST COMMAND...: run a command on that "VM". A host with a /etc/hosts of its own (a RabbitMQ node of a
# cluster) gets its own host name too, as its VM has: RabbitMQ's CLI tools name themselves after it, and the other
# nodes answer them by that name.
in_host() {
  local host=$1; shift
  if [ -f "/etc/netns/$(host_ns "$host")/hosts" ]; then
    # shellcheck disable=SC2016 # $0 and $@ are the inner shell's
    set -- unshare --uts sh -c 'hostname "$0" && exec "$@"' "$(host_vm "$host")" "$@"
  fi
  # shellcheck disable=SC2046 # host_env's words are NAME=value pairs
  ip netns exec "$(host_ns "$host")" env $(host_env "$host") "$@"
}

hosts_network_up() {
  local role ns veth
  ip link add "$HOSTS_BRIDGE" type bridge
  ip link set "$HOSTS_BRIDGE" up
  for role in $(hosts_machines) outside; do
    ns=$(host_ns "$role")
    veth=v-$role
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$HOSTS_BRIDGE" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$(host_ip "$role")/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
}

# host_postgres ROLE PORT LISTEN: a PostgreSQL instance of the role's own on PORT, listening on LISTEN.
host_postgres() {
  local dir=$HOSTS_DIR/$1/pg
  mkdir -p "$dir" && chown postgres "$dir"
  runuser -u postgres -- "$(PG_BIN)/initdb" -D "$dir/data" -U postgres --auth-local=peer \
    --auth-host=scram-sha-256 >/dev/null
  ip netns exec "$(host_ns "$1")" runuser -u postgres -- "$(PG_BIN)/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-c listen_addresses='$3' -c unix_socket_directories='$dir' -p $2" start >/dev/null
}

# hosts_names: with CRUD_MASTER_TOPOLOGY=ha, each RabbitMQ host's /etc/hosts (`ip netns exec` mounts
# /etc/netns/<namespace>/hosts over it) as on its VM: its own name on 127.0.2.1 (Vagrant's Debian boxes), the other
# nodes' (vm_billing_cluster's lines).
hosts_names() {
  local host
  [ "$(vm_topology)" = ha ] || return 0
  for host in $(host_rabbitmq_hosts); do
    mkdir -p "/etc/netns/$(host_ns "$host")"
    { cat /etc/hosts; echo "127.0.2.1 $(host_vm "$host")"; billing_peer_hosts "$(host_vm "$host")"; } \
      >"/etc/netns/$(host_ns "$host")/hosts"
  done
}

# host_rabbitmq HOST LISTEN...: a RabbitMQ node of the host's own, AMQP on the LISTEN addresses, epmd and the
# distribution port as rmq_listen_on has them on its VM (written in the namespace, whose /etc/hosts they follow),
# in the node's dir. In a cluster the node starts alone: its provisioning makes it join (broker_provision).
host_rabbitmq() {
  local host=$1 dir=$HOSTS_DIR/$1/rabbitmq cluster='' addresses
  shift
  if [ "$(vm_topology)" = ha ]; then cluster=$(host_ip "$host"); fi
  mkdir -p "$dir" && chown rabbitmq:rabbitmq "$dir"
  rmq_listeners_conf "$@" >"$dir/rabbitmq.conf"
  in_host "$host" env RMQ_CLUSTER_ADDRESS="$cluster" bash -c \
    "source '$ROOT/scripts/lib/common.sh' && source '$ROOT/scripts/lib/rabbitmq.sh' && rmq_env_conf" \
    >"$dir/rabbitmq-env.conf"
  # epmd first, where that file says: else the first rabbitmqctl below may start it as this machine's own
  # rabbitmq-env.conf has it, and a node whose name is on another address than those cannot start.
  addresses=$(sed -n 's/^ERL_EPMD_ADDRESS=//p' "$dir/rabbitmq-env.conf")
  in_host "$host" env ${addresses:+ERL_EPMD_ADDRESS="$addresses"} epmd -daemon
  in_host "$host" env RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
    RABBITMQ_PID_FILE="$dir/pid" RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
    RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" rabbitmq-server -detached
  wait_until 60 "$(host_vm "$host")'s RabbitMQ node to boot" in_host "$host" rabbitmqctl -q status
  in_host "$host" rabbitmqctl -q await_startup
}

hosts_up() {
  local host
  apt_install_missing iproute2 nftables curl
  hosts_down
  mkdir -p "$HOSTS_DIR"
  hosts_network_up
  hosts_names
  host_postgres inventory "$INVENTORY_DB_PORT" 127.0.0.1
  host_postgres billing "$BILLING_DB_PORT" 127.0.0.1
  for host in $(host_rabbitmq_hosts); do host_rabbitmq "$host" 127.0.0.1 "$(host_ip "$host")"; done
  # Each VM's own provisioning steps, in its namespace; the dependencies first, as `vagrant up` does.
  for host in inventory billing $(host_brokers) gateway; do
    in_host "$host" bash "$ROOT/scripts/hosts-role.sh" "$(host_role "$host")"
  done
}

hosts_down() {
  local role pid
  for role in $hosts_all; do
    # Each step may find what it stops half gone already (a run cut short): the rest goes all the same.
    if [ -d "$HOSTS_DIR/$role/pm2" ]; then in_host "$role" pm2 kill >/dev/null 2>&1 || true; fi
    if [ -f "$HOSTS_DIR/$role/pg/data/postmaster.pid" ]; then
      runuser -u postgres -- "$(PG_BIN)/pg_ctl" -D "$HOSTS_DIR/$role/pg/data" -w -m fast stop >/dev/null 2>&1 || true
    fi
    if [ -f "$HOSTS_DIR/$role/rabbitmq/pid" ]; then
      in_host "$role" rabbitmqctl -q stop >/dev/null 2>&1 ||
        { pid=$(cat "$HOSTS_DIR/$role/rabbitmq/pid"); kill "$pid" 2>/dev/null || true; }
    fi
  done
  for role in $hosts_all outside; do
    # Deleting our end of the veth pair takes both ends with it at once; a deleted namespace frees its
    # end only once the kernel has reaped it, which a quick rebuild may not wait for.
    if ip link show "v-$role" >/dev/null 2>&1; then ip link del "v-$role"; fi
    rm -rf "/etc/netns/$(host_ns "$role")"
    ip netns list | grep -qw "$(host_ns "$role")" || continue
    # epmd and anything else left in the namespace goes with it (some may be exiting already).
    ip netns pids "$(host_ns "$role")" | xargs -r kill -9 2>/dev/null || true
    ip netns del "$(host_ns "$role")"
  done
  if ip link show "$HOSTS_BRIDGE" >/dev/null 2>&1; then ip link del "$HOSTS_BRIDGE"; fi
  rm -rf "$HOSTS_DIR"
  return 0
}
