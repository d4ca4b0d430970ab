#!/usr/bin/env bash
# Build (once) the Debian VM image tests/vm/ boots: a stock cgroup v2 system, systemd as PID 1,
# Debian's own kernel and initramfs (linux-image-amd64 installed INSIDE the debootstrap root, so
# nothing kernel-related touches the host). Cached under $LAMBDALET_VM_CACHE (default
# /var/cache/lambdalet-vm)/<hash of this script>/: vmlinuz, initrd.img, rootfs.img (ext4, root on
# virtio-blk). Prints that directory. Needs root, debootstrap, e2fsprogs and Debian's archive.
#
# The image knows nothing of lambdalet: at boot its one unit of ours mounts the 9p share tagged
# "ctl" (read-write, the test's own directory) and runs ctl/agent.sh from it. The test brings the
# checkout, the service unit and the commands it wants run, so changing the test needs no rebuild.
set -euo pipefail

SUITE=bookworm
MIRROR=${LAMBDALET_VM_MIRROR:-http://deb.debian.org/debian}
CACHE=${LAMBDALET_VM_CACHE:-/var/cache/lambdalet-vm}
# systemd as PID 1, the kernel + its initramfs, Python 3.11 (the checkout's venv interpreter, or the
# libraries a non-Debian one links), iproute2/nftables (environments' network, as on the host).
PACKAGES=systemd,systemd-sysv,udev,dbus,kmod,linux-image-amd64,initramfs-tools,python3.11,iproute2,nftables,procps

key=$(sha256sum "$0" | cut -c1-16)
out="$CACHE/$key"
if [[ -f "$out/.done" ]]; then echo "$out"; exit 0; fi
[[ $(id -u) == 0 ]] || { echo "build_image.sh: needs root (debootstrap, chroot)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "build_image.sh: needs debootstrap (apt-get install debootstrap)" >&2; exit 2; }

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock" && flock 9            # one build at a time; a waiter then finds it done
if [[ -f "$out/.done" ]]; then echo "$out"; exit 0; fi
work=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"

debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" >&2

cat >"$root/etc/fstab" <<'EOF'
/dev/vda / ext4 rw,relatime 0 1
EOF
echo lambdalet-vm >"$root/etc/hostname"
# QEMU user networking: DHCP on the one virtio NIC (the test forwards a loopback port to it).
mkdir -p "$root/etc/systemd/network"
cat >"$root/etc/systemd/network/80-dhcp.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
EOF
cat >"$root/etc/systemd/system/lambdalet-vm-agent.service" <<'EOF'
[Unit]
Description=run the test's agent from the 9p share "ctl"
After=network-online.target local-fs.target
Wants=network-online.target

[Service]
Type=simple
ExecStartPre=/bin/mkdir -p /mnt/ctl
ExecStartPre=/bin/mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 ctl /mnt/ctl
ExecStart=/bin/sh /mnt/ctl/agent.sh
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
EOF
# 9p and its virtio transport load before the agent's mount (the fs module alone is not enough).
printf '9p\n9pnet_virtio\n' >"$root/etc/modules-load.d/9p.conf"
chroot "$root" systemctl enable systemd-networkd lambdalet-vm-agent.service >&2
chroot "$root" systemctl mask systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer >&2 || true
chroot "$root" passwd -d root >&2          # the serial console, for diagnosis only (no network login)

cp -L "$root/boot/vmlinuz" "$work/vmlinuz" 2>/dev/null || cp "$root"/boot/vmlinuz-* "$work/vmlinuz"
cp -L "$root/boot/initrd.img" "$work/initrd.img" 2>/dev/null || cp "$root"/boot/initrd.img-* "$work/initrd.img"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
mkfs.ext4 -q -L lambdalet-vm -d "$root" "$work/rootfs.img" 3G >&2

mkdir -p "$out"
mv "$work/vmlinuz" "$work/initrd.img" "$work/rootfs.img" "$out/"
touch "$out/.done"
# images of earlier versions of this script are never booted again (~0.8 GB each)
find "$CACHE" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended -regex '.*/[0-9a-f]{16}' \
  ! -name "$key" -exec rm -rf {} +
echo "$out"
