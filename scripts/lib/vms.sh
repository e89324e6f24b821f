# shellcheck shell=bash
# `make test-vms` (scripts/test-vms.sh): the project's own Vagrantfile booted on three real VMs, under QEMU's
# software emulation through libvirt (../shared/VM-LAB.md says why and what it took). The machine it runs on,
# its libvirt daemons, the cached box, a timeline of the steps. Source after common.sh.
#
# Everything it changes on the host is undone on the way out (vms_finish): the VMs destroyed, the daemons it
# started stopped, libvirt's QEMU settings, IP forwarding and the firewall tables put back as they were.

# The box and Vagrant's own home (boxes, plugins' state) are kept here between runs; nothing else is.
VMS_HOME=${CRUD_MASTER_VMS_HOME:-/var/lib/crud-master-vms}
VMS_RUN=/run/crud-master-vms
VMS_MACHINES=(gateway-vm inventory-vm billing-vm)
VMS_LIBVIRT=qemu:///system

export VAGRANT_HOME=$VMS_HOME/vagrant.d
export VAGRANT_DEFAULT_PROVIDER=libvirt
# Only the package registries are reachable: no version check, no box update check against Vagrant's cloud.
export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_BOX_UPDATE_CHECK_DISABLE=1
export LIBVIRT_DEFAULT_URI=$VMS_LIBVIRT

# --- the timeline ----------------------------------------------------------------------------------------

VMS_T0=$SECONDS
VMS_TIMELINE=()
VMS_STEP=
VMS_STEP_START=0

vms_clock() { printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); }

# step NAME COMMAND...: run one step of the test, timed; a failing command ends the run (set -e), and the
# step is then recorded as failed by vms_finish.
step() {
  VMS_STEP=$1
  VMS_STEP_START=$SECONDS
  shift
  log "[$(vms_clock $((SECONDS - VMS_T0)))] $VMS_STEP"
  "$@"
  vms_step_done ok
}

vms_step_done() {
  VMS_TIMELINE+=("$(printf '%8s %8s  %-6s %s' "+$(vms_clock $((VMS_STEP_START - VMS_T0)))" \
    "$(vms_clock $((SECONDS - VMS_STEP_START)))" "$1" "$VMS_STEP")")
  VMS_STEP=
}

vms_timeline() {
  local row log
  printf '\n[crud-master] make test-vms: timeline (start, duration, result, step)\n' >&2
  for row in "${VMS_TIMELINE[@]}"; do printf '  %s\n' "$row" >&2; done
  printf '  %8s %8s  total\n' "" "$(vms_clock $((SECONDS - VMS_T0)))" >&2
  # The first `vagrant up`'s lines (test-vms.sh keeps them as provisioning.log), or those of a first one
  # that failed.
  for log in "$VMS_RUN/provisioning.log" "$VMS_RUN/vagrant-up.log"; do
    [ -f "$log" ] && { vms_provisioning_times "$log" >&2; break; }
  done
  echo >&2
}

# Where the first `vagrant up` spent its time, per VM, from its clocked lines: when the VM was ready to
# provision, how long its role took, and the longest steps of it (each [crud-master] line to the next).
vms_provisioning_times() {
  python3 - "$1" <<'PY'
import re, sys
from collections import defaultdict

def clock(s):
    return "?" if s is None else f"{s // 60}:{s % 60:02d}"

line = re.compile(r"^\[(\d+):(\d\d)\] (?:==> )?\s*([\w-]+-vm): (.*)$")
events = defaultdict(list)
for text in open(sys.argv[1], encoding="utf-8", errors="replace"):
    m = line.match(text.rstrip("\n"))
    if m:
        events[m[3]].append((int(m[1]) * 60 + int(m[2]), m[4]))
print("  where the first vagrant up went, per VM:")
for vm, ev in sorted(events.items()):
    booted = next((t for t, x in ev if "Machine booted and ready" in x), None)
    start = next((t for t, x in ev if re.search(r"Running provisioner: \w+ role", x)), None)
    ready = next((t for t, x in ev if re.search(r"\[crud-master\] \w+ role ready", x)), None)
    steps = [(t, x.removeprefix("[crud-master] ")) for t, x in ev if x.startswith("[crud-master] ")]
    longest = sorted(((b[0] - a[0], a[1]) for a, b in zip(steps, steps[1:])), reverse=True)[:6]
    took = clock(ready - start) if start is not None and ready is not None else "?"
    print(f"    {vm}: booted at +{clock(booted)}; its role from +{clock(start)} to +{clock(ready)} ({took})")
    print("      longest: " + "; ".join(f"{what} {clock(d)}" for d, what in longest))
PY
}

# Each line of a long command (vagrant up), prefixed with the run's clock: the provisioning's own lines then
# say where its time goes. A progress meter redrawn in place (the box's upload) is left out.
vms_stamped() {
  local line
  while IFS= read -r line; do
    line=${line//$'\e[K'/}
    line=${line##*$'\r'}
    while [[ $line =~ Progress:\ [0-9]+% ]]; do line=${line//"${BASH_REMATCH[0]}"/}; done
    [ -n "$line" ] || continue
    printf '[%s] %s\n' "$(vms_clock $((SECONDS - VMS_T0)))" "$line"
  done
}

# --- the host ----------------------------------------------------------------------------------------------

# QEMU and libvirt, Vagrant and its libvirt provider, what builds the box, rsync for the shared folder.
vms_host_install() {
  apt_install_missing qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-daemon-driver-qemu \
    libvirt-clients dnsmasq-base vagrant vagrant-libvirt rsync openssh-client curl nftables \
    debootstrap extlinux e2fsprogs fdisk
}

# What vms_finish puts back: IP forwarding and the firewall tables, as they were before libvirt's networks.
vms_host_record() {
  mkdir -p "$VMS_RUN"
  sysctl -n net.ipv4.ip_forward >"$VMS_RUN/ip_forward"
  nft list tables >"$VMS_RUN/nft-tables" 2>/dev/null || : >"$VMS_RUN/nft-tables"
}

vms_host_restore() {
  local table
  if [ -f "$VMS_RUN/ip_forward" ] && [ "$(sysctl -n net.ipv4.ip_forward)" != "$(cat "$VMS_RUN/ip_forward")" ]; then
    log "host: net.ipv4.ip_forward back to $(cat "$VMS_RUN/ip_forward")"
    sysctl -q -w "net.ipv4.ip_forward=$(cat "$VMS_RUN/ip_forward")"
  fi
  if [ -f "$VMS_RUN/nft-tables" ]; then
    nft list tables 2>/dev/null | while IFS= read -r table; do
      grep -qxF "$table" "$VMS_RUN/nft-tables" && continue
      log "host: removing the firewall $table that libvirt added"
      # shellcheck disable=SC2086 # "table FAMILY NAME"
      nft delete $table
    done
  fi
}

# --- libvirt -----------------------------------------------------------------------------------------------

# Without udev, /dev/kvm is root's only, and libvirt, which probes it as root, then fails to start QEMU as
# libvirt-qemu; QEMU run as root gets past that (VM-LAB.md, item 2). Put back on the way out.
vms_qemu_as_root() {
  local conf=/etc/libvirt/qemu.conf
  grep -qx 'user = "root"' "$conf" && return 0
  cp -p "$conf" "$VMS_RUN/qemu.conf.orig"
  printf '\n# make test-vms (crud-master), while it runs\nuser = "root"\ngroup = "root"\n' >>"$conf"
}

vms_qemu_conf_restore() {
  [ -f "$VMS_RUN/qemu.conf.orig" ] || return 0
  cp -p "$VMS_RUN/qemu.conf.orig" /etc/libvirt/qemu.conf
  rm -f "$VMS_RUN/qemu.conf.orig"
}

vms_pid_alive() { local pid; pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

# The libvirt daemons: systemd starts them where there is one; otherwise they are started here, and only
# those started here are stopped again (their pid files under $VMS_RUN say which).
vms_libvirt_up() {
  local daemon
  if has_systemd; then
    systemctl start virtlogd.socket libvirtd.service
  else
    vms_qemu_as_root
    for daemon in virtlogd libvirtd; do
      pgrep -x "$daemon" >/dev/null && { log "libvirt: $daemon is already running: left as it is"; continue; }
      "$daemon" -d -p "$VMS_RUN/$daemon.pid"
      wait_until 30 "$daemon to start" vms_pid_alive "$VMS_RUN/$daemon.pid"
    done
  fi
  wait_until 60 "libvirtd to answer" virsh -q version
  # Where vagrant-libvirt keeps the box's image and the VMs' disks.
  if ! virsh -q pool-info default >/dev/null 2>&1; then
    changed "libvirt: storage pool 'default' in /var/lib/libvirt/images"
    virsh -q pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
    virsh -q pool-build default >/dev/null
  fi
  # libvirtd may be activating it itself as it starts.
  virsh -q pool-start default >/dev/null 2>&1 || true
  wait_until 30 "libvirt's storage pool 'default' to be active" vms_pool_active
}

vms_pool_active() { virsh -q pool-info default | grep -qE '^State: +running'; }

vms_libvirt_down() {
  local daemon net pid
  [ -f "$VMS_RUN/libvirtd.pid" ] || [ -f "$VMS_RUN/virtlogd.pid" ] || return 0
  # Networks outlive the daemon (their bridges, dnsmasq): stop those it still runs before stopping it.
  if vms_pid_alive "$VMS_RUN/libvirtd.pid"; then
    for net in $(virsh -q net-list --name 2>/dev/null); do virsh -q net-destroy "$net" >/dev/null || true; done
  fi
  for daemon in libvirtd virtlogd; do
    vms_pid_alive "$VMS_RUN/$daemon.pid" || { rm -f "$VMS_RUN/$daemon.pid"; continue; }
    pid=$(cat "$VMS_RUN/$daemon.pid")
    log "libvirt: stopping the $daemon this run started (pid $pid)"
    kill "$pid"
    wait_until 60 "$daemon to stop" bash -c "! kill -0 $pid 2>/dev/null"
    rm -f "$VMS_RUN/$daemon.pid"
  done
}

# --- the box -----------------------------------------------------------------------------------------------

# The box of scripts/box/debian-12.sh, named after its recipe's checksum: built and added once per recipe,
# and a box of an older recipe removed, with the image vagrant-libvirt uploaded of it into the pool.
vms_box_ensure() {
  local recipe=$ROOT/scripts/box/debian-12.sh sum box file old
  sum=$(sha256sum "$recipe" | cut -c1-12)
  box=crud-master/debian-12-$sum
  export CRUD_MASTER_BOX=$box
  for old in $(vagrant box list 2>/dev/null | awk '$1 ~ /^crud-master\/debian-12-/ {print $1}' | sort -u); do
    [ "$old" = "$box" ] && continue
    changed "box: removing $old (an older recipe)"
    vagrant box remove --force --all "$old" >/dev/null
  done
  for old in $(virsh -q vol-list default 2>/dev/null | awk '$1 ~ /^crud-master-VAGRANTSLASH-debian-12-/ {print $1}'); do
    case $old in "crud-master-VAGRANTSLASH-debian-12-${sum}_"*) continue ;; esac
    virsh -q vol-delete --pool default "$old" >/dev/null
  done
  vagrant box list 2>/dev/null | grep -q "^$box " && { log "box: $box (cached)"; return 0; }
  file=$VMS_HOME/debian-12-$sum.box
  mkdir -p "$VMS_HOME"
  [ -f "$file" ] || { changed "box: building $box"; bash "$recipe" "$file"; }
  vagrant box add --name "$box" "$file" >/dev/null
  rm -f "$file"
}

# The harness's user-level Vagrantfile (emulation settings, this machine's CA), merged under the project's.
vms_vagrant_home() {
  mkdir -p "$VAGRANT_HOME"
  cp "$ROOT/scripts/box/harness.Vagrantfile" "$VAGRANT_HOME/Vagrantfile"
}

# --- Vagrant and the VMs -----------------------------------------------------------------------------------

# vms_vagrant ACTION ARGS...: vagrant, in the project's directory on its own Vagrantfile, each line on the
# clock, and kept in $VMS_RUN/vagrant-ACTION.log.
vms_vagrant() { (cd "$ROOT" && vagrant "$@") 2>&1 | vms_stamped | tee "$VMS_RUN/vagrant-$1.log"; }

# vms_each ACTION: one `vagrant ACTION <vm>` per VM, all at once (as `vagrant up` does with libvirt); each
# VM's clocked output is printed once it is done, then whether every one of them succeeded.
vms_each() {
  local action=$1 vm pids=() failed=0 i
  for vm in "${VMS_MACHINES[@]}"; do
    ( (cd "$ROOT" && vagrant "$action" "$vm") 2>&1 | vms_stamped >"$VMS_RUN/$action-$vm.log") &
    pids+=($!)
  done
  for i in "${!VMS_MACHINES[@]}"; do
    wait "${pids[$i]}" || failed=1
    cat "$VMS_RUN/$action-${VMS_MACHINES[$i]}.log"
  done
  [ $failed -eq 0 ] || die "vagrant $action failed on at least one VM (above)"
}

# Plain ssh with the configuration Vagrant prints, for the checks that poll: one `vagrant ssh` costs seconds
# of the host's CPU, which the three emulated guests are short of. Refreshed after each boot.
vms_ssh_config() { (cd "$ROOT" && vagrant ssh-config) >"$VMS_RUN/ssh_config"; }

# on VM COMMAND: run COMMAND (a shell line) on that VM as the vagrant user; prints its output.
on() { ssh -F "$VMS_RUN/ssh_config" -o LogLevel=ERROR "$1" "$2"; }

# vms_destroy: every VM of the project gone, whatever state it is in.
vms_destroy() {
  command -v vagrant >/dev/null && [ -d "$ROOT/.vagrant" ] || return 0
  vms_vagrant destroy -f
}

# The end of every run, passed or failed: the VMs destroyed, the host as it was, and the timeline.
# vms_keep_logs: each VM's PM2 list and the last lines of every app's log, in $VMS_RUN/pm2-<vm>.log.
vms_keep_logs() {
  local vm
  for vm in "${VMS_MACHINES[@]}"; do
    timeout 120 ssh -F "$VMS_RUN/ssh_config" -o LogLevel=ERROR -o ConnectTimeout=10 "$vm" \
      'sudo pm2 list; for f in /root/.pm2/logs/*.log; do echo "== $f"; sudo tail -n 60 "$f"; done' \
      >"$VMS_RUN/pm2-$vm.log" 2>&1
    log "$vm: its PM2 list and the end of its apps' logs, kept in $VMS_RUN/pm2-$vm.log; the last lines:"
    tail -n 40 "$VMS_RUN/pm2-$vm.log" >&2
  done
}

vms_finish() {
  local rc=$?
  trap - EXIT
  set +e
  [ -z "$VMS_STEP" ] || vms_step_done failed
  # What the VMs' apps said is gone with them: keep it, and show its end, before they are destroyed.
  if [ $rc -ne 0 ] && [ -f "$VMS_RUN/ssh_config" ]; then vms_keep_logs; fi
  VMS_STEP="vagrant destroy -f, the host restored"
  VMS_STEP_START=$SECONDS
  vms_destroy
  vms_libvirt_down
  vms_qemu_conf_restore
  vms_host_restore
  vms_step_done "done"
  vms_timeline
  if [ $rc -eq 0 ]; then log "make test-vms: passed"; else log "make test-vms: FAILED (exit $rc)"; fi
  exit $rc
}
