# shellcheck shell=bash
# The three roles of the VM deployment (gateway, inventory, billing). Source after common.sh and the
# postgres, rabbitmq, python, pm2, services and firewall helpers.
#
# role_up is what every copy of a role runs, whether on its Vagrant VM (scripts/provision-<role>-vm.sh) or
# in its network namespace in the three-host test (scripts/hosts-role.sh); the vm_* steps are those only a
# real VM has (a code copy on its own disk, systemd units for boot).

VM_APP_DIR=/opt/crud-master

# role_apps ROLE: the PM2 apps of config.yaml that run on that role's machine.
role_apps() {
  case $1 in
    gateway) echo api_gateway api_gateway_front ;; inventory) echo inventory_app ;; billing) echo billing_app ;;
    *) die "unknown role '$1' (gateway, inventory, billing)" ;;
  esac
}

# What differs from one-machine mode: each service listens on, or talks to, its VM's private address.
# Exported, so that PM2 (started from here) hands them to the apps and `pm2 save` keeps them for boot.
role_env() {
  require_vars GATEWAY_VM_IP INVENTORY_VM_IP BILLING_VM_IP INVENTORY_PORT
  case $1 in
    gateway)
      # Every interface: the host reaches it on the private address; the firewall opens only this port.
      export GATEWAY_HOST=0.0.0.0
      export INVENTORY_URL=http://$INVENTORY_VM_IP:$INVENTORY_PORT
      export RABBITMQ_HOST=$BILLING_VM_IP
      ;;
    inventory)
      export INVENTORY_HOST=$INVENTORY_VM_IP
      export INVENTORY_DB_HOST=127.0.0.1
      ;;
    billing)
      export RABBITMQ_HOST=127.0.0.1
      export BILLING_DB_HOST=127.0.0.1
      ;;
    *) die "unknown role '$1'" ;;
  esac
}

# role_up ROLE: the role's services installed and provisioned (the same steps as `make up` uses for them),
# and its app online in root's PM2.
role_up() {
  "${1}_provision"
  pm2_install
  role_start "$1"
}

# role_start ROLE: root's PM2 daemon (stopping apps with SIGTERM) and the role's app of config.yaml online,
# with the role's settings (role_env). The end of every provisioning, and what a VM runs at each boot
# (scripts/start-role.sh, from vm_pm2_at_boot).
role_start() {
  pm2_daemon_ensure
  # shellcheck disable=SC2046 # one word per app
  pm2_start_apps $(role_apps "$1")
}

# role_done ROLE: the closing line; a re-provisioning that changed nothing says so.
role_done() {
  if [ ${#CHANGES[@]} -eq 0 ]; then log "$1 role: nothing to do, everything was already in place"; fi
  log "$1 role ready: sudo pm2 list shows $(role_apps "$1")"
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
  if [ ! -f "$unit" ]; then
    changed "firewall: loading the $1 rules at boot"
    cat >"$unit" <<UNIT
[Unit]
Description=crud-master firewall ($1 role)
DefaultDependencies=no
Wants=network-pre.target
After=local-fs.target
Before=network-pre.target shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=$VM_APP_DIR/scripts/firewall.sh $1

[Install]
WantedBy=sysinit.target
UNIT
    systemctl daemon-reload
    systemctl enable crud-master-firewall.service >/dev/null
  fi
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

# vm_finish ROLE: the role's app kept across reboots, and its firewall.
vm_finish() {
  vm_pm2_at_boot "$1"
  vm_firewall "$1"
  role_done "$1"
}
