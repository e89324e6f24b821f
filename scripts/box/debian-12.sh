#!/usr/bin/env bash
# scripts/box/debian-12.sh OUT.box: a Debian 12 Vagrant box for the libvirt provider, built from Debian's own
# packages with debootstrap, for `make test-vms` (scripts/test-vms.sh), which caches it and rebuilds it only
# when this file changes. Run as root; needs debootstrap, qemu-utils, extlinux, e2fsprogs, fdisk and Vagrant.
#
# It is a plain, small Debian 12 (the minimal base plus what Vagrant needs), so that the project's provisioning
# must install everything it uses, as it must on the Debian 12 box users boot (bento/debian-12). What a box for
# Vagrant needs (VM-LAB.md): a `vagrant` user with Vagrant's insecure public key and passwordless sudo, sshd,
# the first NIC on DHCP, a boot loader, virtio drivers in the initramfs (initramfs-tools' default, MODULES=most).
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"

out=${1:?usage: $0 OUT.box}
require_root
apt_install_missing debootstrap qemu-utils extlinux e2fsprogs fdisk vagrant

MIRROR=http://deb.debian.org/debian
SIZE_GB=16
# systemd-networkd and resolved rather than ifupdown: Vagrant's hostname step then restarts networkd once,
# where with ifupdown it restarts ifup@ for each NIC and the private NIC's unit fails (the system "degraded").
# netbase (/etc/services, /etc/protocols), procps and apt-utils are on every real Debian install, if not in the
# minimal base.
PACKAGES=systemd-sysv,udev,dbus,systemd-resolved,linux-image-amd64,openssh-server,sudo,ca-certificates,rsync,iproute2,netbase,procps,apt-utils

work=$(mktemp -d /var/tmp/crud-master-box.XXXXXX)
root=$work/root
loop=
box_cleanup() {
  mountpoint -q "$root" && umount -R "$root"
  [ -n "$loop" ] && losetup -d "$loop"
  rm -rf "$work"
}
trap box_cleanup EXIT

# One bootable MBR partition from 1 MiB. Without udev no partition device appears for a loop device, so the
# partition gets a loop device of its own, at its offset.
raw=$work/disk.raw
truncate -s "${SIZE_GB}G" "$raw"
echo 'start=2048, type=83, bootable' | sfdisk -q "$raw"
loop=$(losetup --find --show --offset $((2048 * 512)) "$raw")
# extlinux 6.04 reads neither 64-bit ext4 nor the newer features that e2fsprogs 1.47 may turn on.
mkfs.ext4 -q -L root -O ^64bit,^metadata_csum_seed,^orphan_file "$loop"
mkdir -p "$root"
mount "$loop" "$root"

log "box: debootstrap of Debian 12 (minimal base + $PACKAGES)"
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" >/dev/null

in_root() { chroot "$root" "$@"; }

cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
# The package lists are kept in the box: a first `apt-get update` then fetches only what changed since the
# box was built, where decompressing and parsing all of them takes minutes under emulation. (The chroot
# resolves names with this machine's resolver meanwhile; the guests get their own below.)
rm -f "$root/etc/resolv.conf"
cp /etc/resolv.conf "$root/etc/resolv.conf"
in_root apt-get -qq --error-on=any update
echo 'LABEL=root / ext4 errors=remount-ro 0 1' >"$root/etc/fstab"
echo debian-12 >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian-12\n' >"$root/etc/hosts"

# The first NIC (eth0 with net.ifnames=0) is Vagrant's management network, on DHCP; Vagrant writes the others.
cat >"$root/etc/systemd/network/10-eth0.network" <<'EOF'
[Match]
Name=eth0

[Network]
DHCP=ipv4
EOF
in_root systemctl enable systemd-networkd.service systemd-resolved.service >/dev/null 2>&1
ln -sf /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"

# Every clone must get its own identity: an empty machine-id is filled in at first boot, and D-Bus's copy
# points at it (a copy left by debootstrap would give every guest the same DHCP client id, and only one of
# them an address). The same for sshd's host keys, generated when missing before sshd checks its
# configuration (which fails without them).
: >"$root/etc/machine-id"
ln -sf /etc/machine-id "$root/var/lib/dbus/machine-id"
rm -f "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/systemd/system/ssh.service.d"
cat >"$root/etc/systemd/system/ssh.service.d/host-keys.conf" <<'EOF'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF

# The vagrant user: Vagrant's insecure public key (replaced by a key of each machine's own at its first
# `vagrant up`), passwordless sudo.
in_root useradd --create-home --shell /bin/bash vagrant
install -d -m 700 -o 1000 -g 1000 "$root/home/vagrant/.ssh"
keys=$(dpkg -L vagrant | grep '/keys/vagrant.pub$' | head -n 1)
[ -n "$keys" ] || die "Vagrant's insecure public key (keys/vagrant.pub) is not in the vagrant package"
install -m 600 -o 1000 -g 1000 "$keys" "$root/home/vagrant/.ssh/authorized_keys"
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' >"$root/etc/sudoers.d/vagrant"
chmod 440 "$root/etc/sudoers.d/vagrant"

# Boot: extlinux in the partition, its MBR code in the disk's first sector. This box is for emulated test
# machines, hence two kernel options. tsc=reliable: under emulation the check of the TSC between two vCPUs
# fails, and the kernel then reads the time from the emulated HPET, each read an emulated device access.
# mitigations=off: the speculative-execution defences are extra work for the emulator on every system call
# and context switch, in a throwaway VM that runs only the test.
kernel=$(cd "$root/boot" && ls vmlinuz-* | sort -V | tail -n 1)
initrd=$(cd "$root/boot" && ls initrd.img-* | sort -V | tail -n 1)
mkdir -p "$root/boot/extlinux"
cat >"$root/boot/extlinux/extlinux.conf" <<EOF
DEFAULT debian
PROMPT 0
TIMEOUT 0
LABEL debian
  LINUX /boot/$kernel
  INITRD /boot/$initrd
  APPEND root=LABEL=root ro net.ifnames=0 console=ttyS0 tsc=reliable mitigations=off
EOF
extlinux --install "$root/boot/extlinux" >/dev/null 2>&1
dd if=/usr/lib/EXTLINUX/mbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none

# A persistent journal, as on an installed Debian: the log of the boot before (journalctl -b -1) is what tells
# why a shutdown or a boot took long.
mkdir -p "$root/var/log/journal"
in_root apt-get clean
rm -f "$root"/var/log/*.log
umount "$root"
losetup -d "$loop"
loop=

# A libvirt box: box.img (qcow2), metadata.json, in a tar (VM-LAB.md, item 7).
log "box: converting to qcow2 and packing $out"
qemu-img convert -O qcow2 "$raw" "$work/box.img"
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' "$SIZE_GB" >"$work/metadata.json"
tar -cf "$out.part" -C "$work" metadata.json box.img
mv "$out.part" "$out"
