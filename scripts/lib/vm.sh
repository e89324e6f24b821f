# shellcheck shell=bash
# The three roles of the VM deployment (gateway, inventory, billing). Source after common.sh and the
# postgres, rabbitmq, python, pm2, services and firewall helpers.
#
# role_up is what every copy of a role runs, whether on its Vagrant VM (scripts/provision-<role>-vm.sh) or
# in its network namespace in the three-host test (scripts/hosts-role.sh); the vm_* steps are those only a
# real VM has (a code copy on its own disk, systemd units for boot).

VM_APP_DIR=/opt/crud-master

# role_apps ROLE: the PM2 apps of config.yaml that run on that role's machine (a broker VM runs none: RabbitMQ
# is the distribution's service).
role_apps() {
  case $1 in
    gateway) echo api_gateway api_gateway_front ;; inventory) echo inventory_app ;; billing) echo billing_app ;;
    broker) ;;
    *) die "unknown role '$1' (gateway, inventory, billing, broker)" ;;
  esac
}

# --- the topology: CRUD_MASTER_TOPOLOGY (Vagrantfile) -------------------------------------------------
# three-vm (the default): one RabbitMQ node, on billing-vm. ha: billing-vm-2 and billing-vm-3 (role broker) run two
# more nodes of billing-vm's cluster; billing-vm keeps orders_db and runs one consumer per node.

vm_topology() {
  case ${CRUD_MASTER_TOPOLOGY:-three-vm} in
    three-vm | ha) echo "${CRUD_MASTER_TOPOLOGY:-three-vm}" ;;
    *) die "CRUD_MASTER_TOPOLOGY is three-vm (the default) or ha, not '$CRUD_MASTER_TOPOLOGY'" ;;
  esac
}

# billing_machines: the machines running a RabbitMQ node, billing-vm first (the one the others join).
billing_machines() {
  echo billing-vm
  if [ "$(vm_topology)" = ha ]; then echo billing-vm-2 billing-vm-3; fi
}

# billing_machine_ip MACHINE: its private address, from .env.
billing_machine_ip() {
  case $1 in
    billing-vm) echo "$BILLING_VM_IP" ;; billing-vm-2) echo "$BILLING_VM_2_IP" ;; billing-vm-3) echo "$BILLING_VM_3_IP" ;;
    *) die "no billing machine named '$1'" ;;
  esac
}

# billing_addresses [LOCAL]: RABBITMQ_HOST, every node's address, comma-separated; LOCAL's own as 127.0.0.1.
billing_addresses() {
  local machine addresses=()
  for machine in $(billing_machines); do
    if [ "$machine" = "${1:-}" ]; then addresses+=(127.0.0.1); else addresses+=("$(billing_machine_ip "$machine")"); fi
  done
  (IFS=,; echo "${addresses[*]}")
}

# billing_peer_hosts MACHINE: /etc/hosts lines naming the other nodes' machines, so the nodes find each other by the
# node names RabbitMQ gives them (rabbit@<host name>).
billing_peer_hosts() {
  local machine
  for machine in $(billing_machines); do
    [ "$machine" = "$1" ] || echo "$(billing_machine_ip "$machine") $machine"
  done
}

# What differs from one-machine mode: each service listens on, or talks to, its VM's private address.
# Exported, so that PM2 (started from here) hands them to the apps and `pm2 save` keeps them for boot.
role_env() {
  require_vars GATEWAY_VM_IP INVENTORY_VM_IP BILLING_VM_IP INVENTORY_PORT
  if [ "$(vm_topology)" = ha ]; then require_vars BILLING_VM_2_IP BILLING_VM_3_IP; fi
  case $1 in
    gateway)
      # Every interface: the host reaches it on the private address; the firewall opens only this port.
      export GATEWAY_HOST=0.0.0.0
      export INVENTORY_URL=http://$INVENTORY_VM_IP:$INVENTORY_PORT
      RABBITMQ_HOST=$(billing_addresses)
      export RABBITMQ_HOST
      ;;
    inventory)
      export INVENTORY_HOST=$INVENTORY_VM_IP
      export INVENTORY_DB_HOST=127.0.0.1
      ;;
    billing)
      # The consumers start at the node on this machine, and move on to the others' when it is away.
      RABBITMQ_HOST=$(billing_addresses billing-vm)
      export RABBITMQ_HOST
      export BILLING_DB_HOST=127.0.0.1
      if [ "$(vm_topology)" = ha ]; then export RMQ_CLUSTER_ADDRESS=$BILLING_VM_IP; fi
      ;;
    broker)
      [ "$(vm_topology)" = ha ] || die "the broker role is CRUD_MASTER_TOPOLOGY=ha's (billing-vm-2, billing-vm-3)"
      require_vars VM_IP
      export RMQ_CLUSTER_ADDRESS=$VM_IP
      ;;
    *) die "unknown role '$1'" ;;
  esac
}

# role_up ROLE: the role's services installed and provisioned (the same steps as `make up` uses for them),
# and its apps online in root's PM2.
role_up() {
  "${1}_provision"
  [ -n "$(role_apps "$1")" ] || return 0
  pm2_install
  role_start "$1"
}

# role_start ROLE: root's PM2 daemon (stopping apps with SIGTERM) and the role's apps of config.yaml online,
# with the role's settings (role_env); on billing-vm one consumer per RabbitMQ node, each starting at a node of its
# own. The end of every provisioning, and what a VM runs at each boot (scripts/start-role.sh, from vm_pm2_at_boot).
role_start() {
  pm2_daemon_ensure
  # shellcheck disable=SC2046 # one word per app
  pm2_start_apps $(role_apps "$1")
  # Only where there are several nodes: the three-vm boot path stays one `pm2 start`, no `pm2 jlist` more.
  if [ "$1" = billing ] && [ "$(vm_topology)" = ha ]; then pm2_scale "$(billing_machines | wc -w)" billing_app; fi
}

# role_done ROLE: the closing line; a re-provisioning that changed nothing says so.
role_done() {
  if [ ${#CHANGES[@]} -eq 0 ]; then log "$1 role: nothing to do, everything was already in place"; fi
  if [ -n "$(role_apps "$1")" ]; then
    log "$1 role ready: sudo pm2 list shows $(role_apps "$1")"
  else
    log "$1 role ready: sudo rabbitmqctl cluster_status shows its node in billing-vm's cluster"
  fi
}

# --- steps only a real VM has ---------------------------------------------------------------------------

# The apps run from a copy on the VM's own disk, not from the /vagrant shared folder: venvs need
# symlinks and a fast disk, and a later `vagrant provision` brings the new code over.
vm_sync_code() {
  apt_install_missing rsync
  [ "$ROOT" = "$VM_APP_DIR" ] && return 0
  mkdir -p "$VM_APP_DIR"
  rsync -a --delete --exclude .git --exclude .vagrant --exclude '.venv/' --exclude node_modules \
    --exclude __pycache__ --exclude 'bench/results/' "$ROOT/" "$VM_APP_DIR/"
}

# Services that listen on the private address (the inventory on inventory-vm, RabbitMQ on billing-vm) may start
# at boot before that interface has its address; letting them bind to it anyway avoids a failed first start.
vm_allow_early_bind() {
  local conf=/etc/sysctl.d/60-crud-master.conf
  [ "$(cat "$conf" 2>/dev/null)" = "net.ipv4.ip_nonlocal_bind = 1" ] && return 0
  changed "sysctl: services may bind to the private address before it is up"
  echo "net.ipv4.ip_nonlocal_bind = 1" >"$conf"
  sysctl -q -p "$conf"
}

# Root's PM2 comes back at boot with the role's apps online, still stopping apps with SIGTERM, and its logs
# are rotated by logrotate (config from `pm2 logrotate`).
#
# The unit is the one `pm2 startup` writes, but it does not start what `pm2 resurrect` finds in PM2's dump
# file: it starts the role's app from config.yaml, as provisioning does (scripts/start-role.sh). The dump is
# PM2's last state, not the role's: a PM2 daemon dumps its list whenever it is signalled to exit (PM2's
# Daemon.gracefullExit), and the daemon started by provisioning, outside the unit, is exactly that at the first
# shutdown, so an app stopped then (`sudo pm2 stop billing_app`) came back stopped at every later boot (the
# unit's own `pm2 kill` at later shutdowns dumps nothing). The app now comes back whatever was stopped.
vm_pm2_at_boot() {
  local dir=/etc/systemd/system/pm2-root.service.d reload=
  if [ ! -f /etc/systemd/system/pm2-root.service ]; then
    changed "PM2: starting root's daemon at boot"
    pm2 startup systemd -u root --hp /root >/dev/null
  fi
  if file_ensure "$dir/kill-signal.conf" "[Service]
Environment=PM2_KILL_SIGNAL=SIGTERM"; then
    changed "PM2: the boot-time daemon stops apps with SIGTERM"
    reload=1
  fi
  # An emulated or busy machine can take longer than systemd's default 90 s to start PM2 and an app.
  if file_ensure "$dir/start-role.conf" "[Service]
Environment=CRUD_MASTER_TOPOLOGY=$(vm_topology)
ExecStart=
ExecStart=$VM_APP_DIR/scripts/start-role.sh $1
TimeoutStartSec=10min"; then
    changed "PM2: at boot, $(role_apps "$1") started from config.yaml, not from PM2's dump"
    reload=1
  fi
  [ -z "$reload" ] || systemctl daemon-reload
  [ -f /etc/logrotate.d/pm2-root ] || { changed "PM2: rotating logs"; pm2 logrotate -u root >/dev/null; }
}

# The role's firewall, now and at every boot, before any network interface comes up (as Debian's own
# nftables.service does: no default dependencies, so no ordering cycle with the network).
vm_firewall() {
  local unit=/etc/systemd/system/crud-master-firewall.service
  apt_install_missing nftables
  firewall_load "$1"
  if file_ensure "$unit" "[Unit]
Description=crud-master firewall ($1 role)
DefaultDependencies=no
Wants=network-pre.target
After=local-fs.target
Before=network-pre.target shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
Environment=CRUD_MASTER_TOPOLOGY=$(vm_topology)
ExecStart=$VM_APP_DIR/scripts/firewall.sh $1

[Install]
WantedBy=sysinit.target"; then
    changed "firewall: loading the $1 rules at boot"
    systemctl daemon-reload
    systemctl enable crud-master-firewall.service >/dev/null
  fi
}

# vm_billing_cluster ROLE: a node of CRUD_MASTER_TOPOLOGY=ha's RabbitMQ cluster (billing-vm's, or a broker VM's)
# finds the others by name (rabbit@<machine>: /etc/hosts) and is trusted by them (the Erlang cookie of .env, which
# rmq_listen_on then puts in place). Nothing to do in the three-vm topology.
vm_billing_cluster() {
  local begin="# crud-master: RabbitMQ cluster nodes" end="# crud-master: end" block hosts
  [ "$(vm_topology)" = ha ] || return 0
  require_vars BILLING_CLUSTER_COOKIE
  export RMQ_ERLANG_COOKIE=$BILLING_CLUSTER_COOKIE
  block=$(printf '%s\n%s\n%s' "$begin" "$(billing_peer_hosts "$(hostname -s)")" "$end")
  hosts=$(sed "/^$begin\$/,/^$end\$/d" /etc/hosts)
  if file_ensure /etc/hosts "$hosts
$block"; then changed "/etc/hosts: the other RabbitMQ nodes' machines"; fi
}

# vm_begin ROLE: the code copied to the VM's disk (ROOT moves there), the settings of .env, and the
# addresses this role uses on the private network.
vm_begin() {
  require_root
  vm_sync_code
  ROOT=$VM_APP_DIR
  load_env "$ROOT/.env"
  role_env "$1"
  log "provisioning the $1 role from $ROOT"
}

# vm_finish ROLE: the role's apps kept across reboots, and its firewall.
vm_finish() {
  if [ -n "$(role_apps "$1")" ]; then vm_pm2_at_boot "$1"; fi
  vm_firewall "$1"
  role_done "$1"
}
