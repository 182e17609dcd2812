#!/usr/bin/env bash
# Starts virtlogd and libvirtd when they are not running (these machines have no systemd) and
# gives /dev/kvm the group libvirt expects. Idempotent and quick; the libvirt backend and its
# tests call it so that a bare CI machine works.
set -euo pipefail

# Without this, libvirt cannot open /dev/kvm, re-probes QEMU's capabilities on every call and
# each domain create() costs ~4 s more (seen with libvirt 9.0 on Debian 12).
if [[ -c /dev/kvm && $(id -u) -eq 0 ]] && getent group kvm >/dev/null; then
    if [[ $(stat -c '%G %a' /dev/kvm) != "kvm 660" ]]; then
        chgrp kvm /dev/kvm && chmod 660 /dev/kvm
    fi
fi

running() { pgrep -x "$1" >/dev/null 2>&1; }

# virtlogd first: libvirtd hands each domain's console/log to it, and a domain fails to start
# when it is absent.
running virtlogd || virtlogd -d
# libvirtd daemonises each QEMU, so a guest's QEMU is an orphan: init reaps it when it exits.
# libvirt's destroy waits for that, and where init reaps late (on these machines ~1.5 s), every
# VM stop took that long. tini -s makes itself the subreaper of libvirtd and of every QEMU it
# starts, and reaps each at once (a VM stop: 1.6 s -> 0.2 s). It forwards signals to libvirtd.
if ! running libvirtd; then
    mkdir -p /var/log/libvirt
    setsid -f tini -s -- libvirtd >>/var/log/libvirt/libvirtd-stderr.log 2>&1 </dev/null
fi

# libvirtd opens its socket a moment after it daemonises; callers connect right away.
for _ in $(seq 1 100); do
    if [[ -S /run/libvirt/libvirt-sock ]] && virsh -c qemu:///system version >/dev/null 2>&1; then
        exit 0
    fi
    sleep 0.1
done
echo "error: libvirtd did not start answering on qemu:///system within 10 s" >&2
exit 1
