#!/usr/bin/env bash
# make test-vms: the project's own Vagrantfile and scripts/ on three real VMs, then the audit
# (../shared/AUDIT.md) from this machine, the firewall, reboots, a second provisioning, halt and up.
#
# The VMs run under QEMU's software emulation through libvirt (vagrant-libvirt), since nothing faster boots
# here (../shared/VM-LAB.md): the packages come from Debian, the daemons are started (and stopped) here when
# there is no systemd, the Debian 12 box is built from Debian's packages (scripts/box/debian-12.sh) and cached.
# The box is handed to the Vagrantfile through CRUD_MASTER_BOX, and what only this machine needs (emulation
# settings, its CA) is in a user-level Vagrantfile (scripts/box/harness.Vagrantfile) under this run's own
# VAGRANT_HOME. The VMs are destroyed at the end whatever happened, and a timeline printed. About an hour.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
for lib in pm2 vms; do source "$ROOT/scripts/lib/$lib.sh"; done

require_root
load_env
require_vars GATEWAY_VM_IP INVENTORY_VM_IP BILLING_VM_IP GATEWAY_PORT INVENTORY_PORT INVENTORY_DB_PORT \
  RABBITMQ_PORT BILLING_DB_PORT BILLING_STATUS_PORT INVENTORY_DB_NAME BILLING_DB_NAME RABBITMQ_VHOST RABBITMQ_QUEUE
GATEWAY=http://$GATEWAY_VM_IP:$GATEWAY_PORT

vm_ip() { case $1 in gateway-vm) echo "$GATEWAY_VM_IP" ;; inventory-vm) echo "$INVENTORY_VM_IP" ;; billing-vm) echo "$BILLING_VM_IP" ;; esac; }
vm_apps() {
  case $1 in gateway-vm) echo api_gateway_front api_gateway ;; inventory-vm) echo inventory_app ;; billing-vm) echo billing_app ;; esac
}

# --- what the checks use -----------------------------------------------------------------------------------

# http METHOD PATH [JSON] [HEADER]: from this machine to the gateway, as Postman would; prints the status, the
# body is left in $VMS_RUN/body.
http() {
  local args=(-sS -m 30 -X "$1" -o "$VMS_RUN/body" -w '%{http_code}' "$GATEWAY$2")
  [ -z "${3:-}" ] || args+=(-H 'Content-Type: application/json' --data-binary "$3")
  [ -z "${4:-}" ] || args+=(-H "$4")
  curl "${args[@]}" || echo 000
}

# expect_http STATUS METHOD PATH [JSON] [HEADER]
expect_http() {
  local want=$1 got
  shift
  got=$(http "$@")
  [ "$got" = "$want" ] || die "$1 $2 answered $got, expected $want: $(cat "$VMS_RUN/body")"
  log "  $1 $2: $got $(head -c 200 "$VMS_RUN/body")"
}

gateway_healthy() { [ "$(http GET /health)" = 200 ]; }

# audit VM COMMAND: the audit's own way onto a VM, `vagrant ssh VM -c COMMAND`, its output left in $VMS_RUN/out;
# saw PATTERN WHAT: that output has a line matching PATTERN (grep -E), else the run fails with WHAT.
audit() { (cd "$ROOT" && vagrant ssh "$1" -c "$2") >"$VMS_RUN/out" 2>&1 || die "vagrant ssh $1 -c \"$2\" failed: $(cat "$VMS_RUN/out")"; }
saw() { grep -qE -- "$1" "$VMS_RUN/out" || die "$2: $(cat "$VMS_RUN/out")"; }

# sql VM DATABASE QUERY: one value, read as the audit does (sudo -i -u postgres psql on that VM).
sql() { on "$1" "sudo -i -u postgres psql -XAtq -d $2 -c \"$3\""; }

orders_of() { sql billing-vm "$BILLING_DB_NAME" "SELECT count(*) FROM orders WHERE $1"; }
orders_are() { [ "$(orders_of "$1")" = "$2" ]; }

queue_empty() { [ "$(queue_depth)" = 0 ]; }
queue_depth() {
  on billing-vm "sudo rabbitmqctl -q list_queues -p $RABBITMQ_VHOST name messages" |
    awk -v q="$RABBITMQ_QUEUE" '$1 == q {print $2}'
}

# pm2_status VM APP: the app's status in root's PM2 on that VM (online, stopped, ...), without ever starting
# a daemon there (`pm2 jlist` would spawn one if the boot unit had not).
pm2_status() {
  local list
  list=$(on "$1" "sudo systemctl is-active -q pm2-root && sudo pm2 jlist") || { echo "not there (pm2-root is not active)"; return 0; }
  python3 -c '
import json, sys
apps = {a["name"]: a["pm2_env"]["status"] for a in json.load(sys.stdin)}
print(apps.get(sys.argv[1], "absent"))' "$2" <<<"$list"
}

expect_online() {
  local vm app status
  for vm in "${VMS_MACHINES[@]}"; do
    for app in $(vm_apps "$vm"); do
      status=$(pm2_status "$vm" "$app")
      [ "$status" = online ] || die "$vm: $app is $status under PM2, expected online"
      log "  $vm: $app online under root's PM2"
    done
  done
}

expect_firewall_loaded() {
  local vm
  for vm in "${VMS_MACHINES[@]}"; do
    on "$vm" 'sudo nft list table inet crud_master' >/dev/null || die "$vm: the crud_master firewall table is not loaded"
  done
  log "  the firewall table is loaded on every VM"
}

# reachable HOST PORT: a TCP handshake from this machine within 3 s (the firewalls drop, so a closed port
# times out). from VM HOST PORT: the same, from that VM.
reachable() { timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
from() { on "$1" "timeout 3 bash -c 'exec 3<>/dev/tcp/$2/$3' 2>/dev/null"; }

# --- the steps ---------------------------------------------------------------------------------------------

host_ready() {
  vms_host_install
  vms_host_record
  vms_libvirt_up
  vms_vagrant_home
  newman_install
}

vagrant_up() {
  # A run cut short may have left its VMs behind.
  vms_destroy
  rm -f "$VMS_RUN/provisioning.log"
  vms_vagrant up --provider libvirt
  cp "$VMS_RUN/vagrant-up.log" "$VMS_RUN/provisioning.log"
  vms_ssh_config
  wait_until 300 "the gateway to report every dependency up ($GATEWAY/health)" gateway_healthy
}

# Audit 3: `vagrant status` shows the three VMs running.
audit_status() {
  local status vm
  status=$(cd "$ROOT" && vagrant status)
  for vm in "${VMS_MACHINES[@]}"; do
    grep -qE "^$vm +running" <<<"$status" || die "vagrant status does not show $vm running: $status"
  done
  log "  vagrant status: ${VMS_MACHINES[*]} running"
}

# Audit 9: the committed collection with the vagrant environment, every assertion of it.
audit_newman() {
  (cd "$ROOT" && newman run postman/crud-master.postman_collection.json \
    -e postman/vagrant.postman_environment.json --bail --color off)
}

# Audit 7-8, then 10-11: a movie added and listed through the gateway; movies_db listed on inventory-vm and
# its row there. After the collection, which starts by deleting every movie.
audit_movies() {
  local title="A new movie" status
  # The status is the collection's to check (the audit's code); here, that the movie was created.
  status=$(http POST /api/movies/ '{"title": "A new movie", "description": "Very short description"}')
  case $status in 2??) log "  POST /api/movies/: $status $(cat "$VMS_RUN/body")" ;; *) die "POST /api/movies/ answered $status: $(cat "$VMS_RUN/body")" ;; esac
  grep -q "\"$title\"" "$VMS_RUN/body" || die "POST /api/movies/ did not answer with the movie: $(cat "$VMS_RUN/body")"
  expect_http 200 GET /api/movies/
  grep -q "\"$title\"" "$VMS_RUN/body" || die "GET /api/movies/ does not list the movie just added"
  audit inventory-vm "sudo -i -u postgres psql -c '\\l'"
  saw "^ $INVENTORY_DB_NAME " "\\l on inventory-vm does not list $INVENTORY_DB_NAME"
  audit inventory-vm "sudo -i -u postgres psql -d $INVENTORY_DB_NAME -c 'TABLE movies;'"
  saw "\\| $title +\\|" "TABLE movies on inventory-vm lacks '$title'"
  log "  inventory-vm: \\l lists $INVENTORY_DB_NAME, TABLE movies has '$title'"
}

# Audit 12-18, literally: an order; billing_app stopped; another order, still 200; orders_db listed, the
# first order there and not the second; billing_app started; the second order there, once.
audit_orders() {
  expect_http 200 POST /api/billing/ '{"user_id": "20", "number_of_items": "99", "total_amount": "250"}'
  wait_until 120 "the order of user 20 in orders_db" orders_are "user_id = 20" 1
  audit billing-vm 'sudo pm2 stop billing_app'
  audit billing-vm 'sudo pm2 list'
  saw 'billing_app.*stopped' "sudo pm2 list does not show billing_app stopped"
  log "  billing-vm: sudo pm2 list shows billing_app stopped"
  expect_http 200 POST /api/billing/ '{"user_id": "22", "number_of_items": "10", "total_amount": "50"}'
  audit billing-vm "sudo -i -u postgres psql -c '\\l'"
  saw "^ $BILLING_DB_NAME " "\\l on billing-vm does not list $BILLING_DB_NAME"
  audit billing-vm "sudo -i -u postgres psql -d $BILLING_DB_NAME -c 'TABLE orders;'"
  saw '^ +[0-9]+ \| +20 \|' "TABLE orders lacks the order of user 20"
  ! grep -qE '^ +[0-9]+ \| +22 \|' "$VMS_RUN/out" || die "the order of user 22 is stored while billing_app is stopped"
  log "  billing-vm: \\l lists $BILLING_DB_NAME; TABLE orders has user 20, not yet user 22"
  audit billing-vm 'sudo pm2 start billing_app'
  wait_until 120 "the order of user 22 in orders_db once billing_app is back" orders_are "user_id = 22" 1
  wait_until 120 "billing_queue to drain" queue_empty
  orders_are "user_id = 22" 1 || die "the order of user 22 is stored $(orders_of "user_id = 22") times"
  log "  billing-vm: the order of user 22 stored once billing_app started, exactly once"
}

# The flows of the README's table and nothing else: from this machine, of every port listening on each VM
# only SSH answers, and the gateway's port on gateway-vm; from gateway-vm, the inventory and AMQP, not movies_db;
# inventory-vm and billing-vm do not reach each other. Beneath the firewall, what nobody else needs listens on
# loopback only: both PostgreSQL servers, epmd and RabbitMQ's distribution port.
check_firewall() {
  local vm ip port open probes=() i
  for vm in "${VMS_MACHINES[@]}"; do
    ip=$(vm_ip "$vm")
    for port in $(on "$vm" 'sudo ss -Htln' | awk '{sub(/.*:/, "", $4); print $4}' | sort -un); do
      open=no
      { [ "$port" = 22 ] || { [ "$vm" = gateway-vm ] && [ "$port" = "$GATEWAY_PORT" ]; }; } && open=yes
      probes+=("$vm $ip $port $open")
    done
  done
  # All at once: each closed port takes the probe's whole timeout.
  rm -rf "$VMS_RUN/probes" && mkdir -p "$VMS_RUN/probes"
  for i in "${!probes[@]}"; do
    read -r vm ip port open <<<"${probes[$i]}"
    { if reachable "$ip" "$port"; then echo yes; else echo no; fi >"$VMS_RUN/probes/$i"; } &
  done
  wait
  for i in "${!probes[@]}"; do
    read -r vm ip port open <<<"${probes[$i]}"
    case $open-$(cat "$VMS_RUN/probes/$i") in
      no-yes) die "from this machine, $vm:$port answers; the firewall should drop it" ;;
      yes-no) die "from this machine, $vm:$port does not answer" ;;
    esac
  done
  log "  from this machine, of the ports listening on the VMs only 22 and $GATEWAY_PORT (gateway-vm) answer:" \
    "$(printf '%s\n' "${probes[@]}" | awk '{a[$1] = a[$1] " " $3} END {for (vm in a) printf "%s:%s; ", vm, a[vm]}')"
  from gateway-vm "$INVENTORY_VM_IP" "$INVENTORY_PORT" || die "gateway-vm does not reach the inventory"
  ! from gateway-vm "$INVENTORY_VM_IP" "$INVENTORY_DB_PORT" || die "gateway-vm reaches movies_db, which it never uses"
  from gateway-vm "$BILLING_VM_IP" "$RABBITMQ_PORT" || die "gateway-vm does not reach RabbitMQ"
  ! from inventory-vm "$BILLING_VM_IP" "$RABBITMQ_PORT" || die "inventory-vm reaches RabbitMQ on billing-vm"
  ! from billing-vm "$INVENTORY_VM_IP" "$INVENTORY_DB_PORT" || die "billing-vm reaches movies_db on inventory-vm"
  ! from billing-vm "$INVENTORY_VM_IP" "$INVENTORY_PORT" || die "billing-vm reaches the inventory on inventory-vm"
  log "  gateway-vm reaches the inventory and AMQP, not movies_db; inventory-vm and billing-vm do not reach each other"
  expect_listening inventory-vm "$INVENTORY_DB_PORT" "127.0.0.1"
  expect_listening billing-vm "$BILLING_DB_PORT" "127.0.0.1"
  expect_listening billing-vm "$RABBITMQ_PORT" "127.0.0.1 $BILLING_VM_IP"
  # The node's distribution port and epmd on the loopback address its host name resolves to (127.0.2.1 on
  # Vagrant's Debian boxes: scripts/lib/rabbitmq.sh, rmq_node_address), epmd on 127.0.0.1 too.
  local node
  node=$(on billing-vm "getent ahostsv4 \$(hostname -s)" | awk 'NR == 1 { print $1 }')
  expect_listening billing-vm 25672 "$node"
  if [ "$node" = 127.0.0.1 ]; then
    expect_listening billing-vm 4369 "127.0.0.1"
  else
    expect_listening billing-vm 4369 "127.0.0.1 $node"
  fi
}

# expect_listening VM PORT "ADDRESS...": what listens on PORT on that VM listens on these addresses (IPv4) and
# on no other (IPv6 loopback aside).
expect_listening() {
  local got
  got=$(on "$1" "sudo ss -Htln 'sport = :$2'" | awk '{sub(/:[0-9]+$/, "", $4); print $4}' | grep -vxF '[::1]' |
    sort | tr '\n' ' ')
  [ "${got% }" = "$(tr ' ' '\n' <<<"$3" | sort | tr '\n' ' ' | sed 's/ $//')" ] ||
    die "$1: port $2 listens on '${got% }', expected '$3'"
  log "  $1: port $2 listens on $3 only"
}

# reboot HOW APPS: APPS (billing_app, or every app) stopped in PM2 with an order posted meanwhile, then every VM
# rebooted, HOW: `vagrant reload`, or `vagrant halt` then `vagrant up`. Then every app online by itself, the
# firewall loaded, the order stored exactly once.
reboot() {
  local how=$1 apps=$2 key order message_id request_id vm
  key=test-vms-$how-$$
  audit billing-vm 'sudo pm2 stop billing_app'
  expect_http 200 POST /api/billing/ '{"user_id": "30", "number_of_items": "1", "total_amount": "9.90"}' "Idempotency-Key: $key"
  # The row is found by the 200's message id (derived from the key and the order) and carries its request id.
  read -r message_id request_id < <(python3 -c "import json, sys; a = json.load(sys.stdin); print(a['message_id'], a['request_id'])" <"$VMS_RUN/body")
  order="message_id = '$message_id' AND request_id = '$request_id'"
  if [ "$apps" = all ]; then
    for vm in gateway-vm inventory-vm; do on "$vm" "sudo pm2 stop $(vm_apps "$vm")" >/dev/null; done
  fi
  case $how in
    reload) vms_each reload ;;
    halt-up) vms_each halt && vms_vagrant up --provider libvirt ;;
  esac
  vms_ssh_config
  wait_until 600 "the gateway to report every dependency up after the reboot" gateway_healthy
  expect_online
  expect_firewall_loaded
  wait_until 300 "the order posted before the reboot in orders_db" orders_are "$order" 1
  wait_until 120 "billing_queue to drain" queue_empty
  orders_are "$order" 1 || die "the order posted before the reboot is stored $(orders_of "$order") times"
  log "  the order posted while billing_app was stopped: stored exactly once after the reboot"
}

# A second `vagrant provision` changes nothing and says so, on every VM.
provision_again() {
  local vm role
  vms_each provision
  for vm in "${VMS_MACHINES[@]}"; do
    role=${vm%-vm}
    grep -q "$role role: nothing to do" "$VMS_RUN/provision-$vm.log" ||
      die "a second provisioning of $vm changed something (above)"
  done
  expect_online
}

trap vms_finish EXIT
step "host: packages, libvirt daemons, newman" host_ready
step "box: Debian 12 for libvirt (scripts/box/debian-12.sh)" vms_box_ensure
step "vagrant up: the three VMs provisioned" vagrant_up
step "audit 3: vagrant status" audit_status
step "audit 9: the Postman collection (newman, vagrant environment)" audit_newman
step "audit 7-8, 10-11: a movie, movies_db on inventory-vm" audit_movies
step "audit 12-18: orders while billing_app is stopped" audit_orders
step "firewall: from this machine and between the VMs" check_firewall
step "reboot 1, vagrant reload: every app stopped before" reboot reload all
step "vagrant provision again: nothing to do" provision_again
step "reboot 2, vagrant halt and vagrant up: billing_app stopped before" reboot halt-up billing_app
step "firewall again, after the two reboots" check_firewall
