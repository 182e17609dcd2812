#!/usr/bin/env bash
# Installs what the libvirt backend and the vm-echo guest recipe need: libvirt + QEMU (TCG), the
# headers libvirt-python builds against, and the tools the recipe uses. Idempotent; when all is
# there it costs a handful of dpkg-query calls. --check only reports what is missing.
set -euo pipefail

packages=(
    libvirt-daemon-system libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils
    libvirt-dev pkg-config
    procps  # pgrep, for scripts/start-libvirt.sh
    tini    # reaps QEMU as soon as it exits (scripts/start-libvirt.sh says why)
    # the guest recipe: busybox userland, initramfs packing, ext4 populated without mounting,
    # the kernel's xz-compressed payload and modules
    busybox-static cpio e2fsprogs xz-utils zstd
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ "${1:-}" == "--check" ]]; then
        echo "note: Debian packages for VMs not installed: ${missing[*]}" >&2
        exit 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        echo "error: missing Debian packages (${missing[*]}); run as root or:" \
             "sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[[ "${1:-}" == "--check" ]] || exec "$(dirname "$0")/start-libvirt.sh"
