# shellcheck shell=bash
# The three-VM topology rebuilt on one machine with network namespaces, for `make test-hosts`:
# gateway-vm, inventory-vm and billing-vm get their .env addresses on one bridge, plus an "outside"
# host at the host machine's host-only address. Each role loads its own firewall file and runs its
# services bound as on its VM: its own PostgreSQL or RabbitMQ instance, its own PM2 daemon.
# Source after common.sh. Nothing here touches the machine's own PostgreSQL, RabbitMQ or PM2.

HOSTS_DIR=/tmp/crud-master-hosts
HOSTS_BRIDGE=cmbr0
PG_BIN() { echo "/usr/lib/postgresql/$(pg_version)/bin"; }

# host_ns ROLE: the namespace standing for that VM.
host_ns() { echo "cm-$1"; }

host_ip() {
  case $1 in
    gateway) echo "$GATEWAY_VM_IP" ;; inventory) echo "$INVENTORY_VM_IP" ;;
    billing) echo "$BILLING_VM_IP" ;; outside) echo "$HOST_ONLY_HOST_IP" ;;
  esac
}

# The environment each role's processes run with: their own PM2 daemon, and the admin tools pointed
# at the role's own PostgreSQL socket and RabbitMQ node.
host_env() {
  echo "PM2_HOME=$HOSTS_DIR/$1/pm2 PGHOST=$HOSTS_DIR/$1/pg RABBITMQ_NODENAME=rabbit@localhost" \
    "GATEWAY_RUNTIME_DIR=$HOSTS_DIR/$1/run"
}

# in_host ROLE COMMAND...: run a command on that "VM".
in_host() {
  local role=$1; shift
  # shellcheck disable=SC2046 # host_env's words are NAME=value pairs
  ip netns exec "$(host_ns "$role")" env $(host_env "$role") "$@"
}

hosts_network_up() {
  local role ns veth
  ip link add "$HOSTS_BRIDGE" type bridge
  ip link set "$HOSTS_BRIDGE" up
  for role in gateway inventory billing outside; do
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

# host_rabbitmq ROLE LISTEN...: a RabbitMQ node of the role's own, AMQP on the LISTEN addresses, epmd and the
# distribution port on the namespace's loopback: the files rmq_listen_on writes on billing-vm, in the node's dir.
host_rabbitmq() {
  local role=$1 dir=$HOSTS_DIR/$1/rabbitmq
  shift
  mkdir -p "$dir" && chown rabbitmq:rabbitmq "$dir"
  rmq_listeners_conf "$@" >"$dir/rabbitmq.conf"
  rmq_env_conf >"$dir/rabbitmq-env.conf"
  in_host "$role" env RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
    RABBITMQ_PID_FILE="$dir/pid" RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
    RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" rabbitmq-server -detached
  wait_until 60 "billing-vm's RabbitMQ node to boot" in_host "$role" rabbitmqctl -q status
  in_host "$role" rabbitmqctl -q await_startup
}

hosts_up() {
  apt_install_missing iproute2 nftables curl
  hosts_down
  mkdir -p "$HOSTS_DIR"
  hosts_network_up
  host_postgres inventory "$INVENTORY_DB_PORT" 127.0.0.1
  host_postgres billing "$BILLING_DB_PORT" 127.0.0.1
  host_rabbitmq billing 127.0.0.1 "$BILLING_VM_IP"
  # Each VM's own provisioning steps, in its namespace; the dependencies first, as `vagrant up` does.
  local role
  for role in inventory billing gateway; do
    in_host "$role" bash "$ROOT/scripts/hosts-role.sh" "$role"
  done
}

hosts_down() {
  local role pid
  for role in gateway inventory billing; do
    # Each step may find what it stops half gone already (a run cut short): the rest goes all the same.
    if [ -d "$HOSTS_DIR/$role/pm2" ]; then in_host "$role" pm2 kill >/dev/null 2>&1 || true; fi
    if [ -f "$HOSTS_DIR/$role/pg/data/postmaster.pid" ]; then
      runuser -u postgres -- "$(PG_BIN)/pg_ctl" -D "$HOSTS_DIR/$role/pg/data" -w -m fast stop >/dev/null 2>&1 || true
    fi
  done
  if [ -f "$HOSTS_DIR/billing/rabbitmq/pid" ]; then
    in_host billing rabbitmqctl -q stop >/dev/null 2>&1 ||
      { pid=$(cat "$HOSTS_DIR/billing/rabbitmq/pid"); kill "$pid" 2>/dev/null || true; }
  fi
  for role in gateway inventory billing outside; do
    # Deleting our end of the veth pair takes both ends with it at once; a deleted namespace frees its
    # end only once the kernel has reaped it, which a quick rebuild may not wait for.
    if ip link show "v-$role" >/dev/null 2>&1; then ip link del "v-$role"; fi
    ip netns list | grep -qw "$(host_ns "$role")" || continue
    # epmd and anything else left in the namespace goes with it (some may be exiting already).
    ip netns pids "$(host_ns "$role")" | xargs -r kill -9 2>/dev/null || true
    ip netns del "$(host_ns "$role")"
  done
  if ip link show "$HOSTS_BRIDGE" >/dev/null 2>&1; then ip link del "$HOSTS_BRIDGE"; fi
  rm -rf "$HOSTS_DIR"
  return 0
}
