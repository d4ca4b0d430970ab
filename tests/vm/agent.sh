#!/bin/sh
# Runs INSIDE the VM, started by the image's lambdalet-vm-agent.service from the 9p share "ctl"
# (tools/vm/build_image.sh). Mounts what the host shares (the checkout, and the venv's interpreter
# prefix when it is not the VM's own /usr), says it is ready, then runs each command file the host
# drops into ctl/cmd/ once, in name order: N.sh -> N.out, then N.rc (written last, by rename).
set -u
C=/mnt/ctl
. "$C/env.sh"                                       # REPO, PYPREFIX (empty: the VM's /usr)
# read-only and unchanging while the VM runs: cache lookups and pages (cache=none costs a round trip per
# stat, and a Python start-up does thousands: minutes under TCG)
opts=trans=virtio,version=9p2000.L,msize=524288,cache=loose,ro
mkdir -p "$REPO" && mount -t 9p -o "$opts" repo "$REPO"
if [ -n "$PYPREFIX" ]; then mkdir -p "$PYPREFIX" && mount -t 9p -o "$opts" pyprefix "$PYPREFIX"; fi
mkdir -p "$C/cmd"
echo up >"$C/ready.tmp" && mv "$C/ready.tmp" "$C/ready"
while :; do
  for f in "$C"/cmd/*.sh; do
    [ -e "$f" ] || continue
    n=${f%.sh}
    [ -e "$n.rc" ] && continue
    sh "$f" >"$n.out" 2>&1
    echo $? >"$n.rc.tmp" && mv "$n.rc.tmp" "$n.rc"
  done
  sleep 0.1
done
