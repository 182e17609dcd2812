#!/usr/bin/env bash
# Builds the vm-echo guest from Debian packages and lays it out as service packages:
#
#   build/vm-echo/          kind = "vm": dynasoar.toml, VmEcho.wsdl, vmlinux, initrd.img, disk.qcow2
#   build/base.qcow2        a base image: a busybox root filesystem whose /dynasoar serves any
#                           CGI service described by /service/service.conf
#   build/vm-echo-overlay/  the same service whose disk.qcow2 is a small qcow2 overlay on
#                           base.qcow2 carrying only the service (/service); its manifest names
#                           the base by SHA-256, so a host that holds the base gets only the overlay
#   ../vm-counter/build/vm-counter/
#                           VmCounter (deploy/services/vm-counter): the same runtime serving a
#                           stateful counter kept in the guest's memory (stateless = false)
#
# The kernel is Debian's linux-image-amd64 (fetched with apt-get download), booted as the
# decompressed ELF vmlinux through PVH where it has the PVH note (about half the TCG boot time
# of vmlinuz). The initramfs is busybox-static plus the virtio/ext4 modules the Debian kernel
# builds as modules; it mounts the disk and switches to it as the root (/dynasoar/start).
# Run by `make vm-image` (cached on this directory's files); needs no root once the Debian
# packages of scripts/install-vm.sh are installed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${VM_ECHO_BUILD:-$here/build}  # the output directory (make uses the default)
counter_src=$here/../vm-counter
counter_out=${VM_COUNTER_BUILD:-$counter_src/build}
work=$out/work
cache=$out/cache

name=VmEcho
port=8000
path=/Echo
memory_mib=128
disk_mib=16
# The guest's drivers, in load order (insmod does not resolve dependencies): virtio-pci and
# virtio-net for qemu's network, virtio-blk and ext4 (which mounts ext2) for the disk.
modules=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
         failover net_failover virtio_net virtio_blk crc16 crc32c_generic mbcache jbd2 ext4)

# Fixed identities and clock: the same recipe gives the same filesystems.
fs_uuid=6f1c2d1e-5d0a-4a53-9a52-3d1e0e5a7c11
export E2FSPROGS_FAKE_TIME=1136073600 SOURCE_DATE_EPOCH=1136073600

step() { printf '[vm-echo] %s\n' "$*" >&2; }
need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || {
            echo "error: $tool is missing; run scripts/install-vm.sh (as root)" >&2
            exit 1
        }
    done
}
need apt-get apt-cache dpkg-deb busybox cpio mke2fs debugfs qemu-img python3 sha256sum
busybox_bin=/bin/busybox
[[ -x $busybox_bin ]] && "$busybox_bin" --list | grep -qx nc || {
    echo "error: $busybox_bin (Debian busybox-static) is missing" >&2
    exit 1
}

rm -rf "$work" "$out/vm-echo" "$out/vm-echo-overlay" "$out/base.qcow2" "$counter_out/vm-counter"
mkdir -p "$work" "$cache" "$counter_out"

# -- kernel ------------------------------------------------------------------------------------

kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1
}

fetch_kernel() {
    local pkg
    pkg=$(kernel_package)
    if [[ -z $pkg ]]; then
        step "apt has no package lists yet: apt-get update"
        apt-get update -qq
        pkg=$(kernel_package)
    fi
    [[ -n $pkg ]] || { echo "error: apt cannot resolve linux-image-amd64" >&2; exit 1; }
    if ! compgen -G "$cache/${pkg}_*.deb" >/dev/null; then
        step "downloading $pkg"
        # Root's apt drops to the _apt user for downloads, which cannot write here.
        (cd "$cache" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2)
    fi
    compgen -G "$cache/${pkg}_*.deb" | head -n 1
}

deb=$(fetch_kernel)
step "extracting $(basename "$deb")"
dpkg-deb --fsys-tarfile "$deb" |
    tar -x -C "$work" --wildcards './boot/vmlinuz-*' './lib/modules/*/kernel/*'
vmlinuz=$(compgen -G "$work/boot/vmlinuz-*" | head -n 1)

# The ELF inside the bzImage (what scripts/extract-vmlinux does), kept only if it can be
# booted through PVH: QEMU then loads it directly, skipping the real-mode setup and the
# decompression that cost seconds under TCG.
# VM_ECHO_KERNEL=vmlinuz keeps the compressed kernel: 8 MiB to ship instead of 63, ~2x the boot.
kernel_file=vmlinux
if [[ ${VM_ECHO_KERNEL:-vmlinux} == vmlinuz ]] || ! python3 - "$vmlinuz" "$work/vmlinux" <<'EOF'
import gzip, lzma, struct, sys
data = open(sys.argv[1], "rb").read()
for magic, decompress in ((b"\xfd7zXZ\x00", lzma.LZMADecompressor().decompress),
                          (b"\x1f\x8b\x08", lambda b: gzip.GzipFile(fileobj=__import__("io").BytesIO(b)).read())):
    at = data.find(magic)
    if at < 0:
        continue
    try:
        elf = decompress(data[at:])
    except Exception:
        continue
    if elf[:4] == b"\x7fELF":
        break
else:
    sys.exit("no ELF payload found")
# XEN_ELFNOTE_PHYS32_ENTRY (18) in a "Xen" note: the PVH entry point QEMU needs.
if struct.pack("<I4s", 18, b"Xen\x00") not in elf:
    sys.exit("the kernel has no PVH entry note")
open(sys.argv[2], "wb").write(elf)
EOF
then
    step "booting vmlinuz (asked for, or no PVH-bootable vmlinux inside)"
    kernel_file=vmlinuz
    cp "$vmlinuz" "$work/vmlinuz"
fi

# -- initramfs ---------------------------------------------------------------------------------

step "initramfs: busybox + ${#modules[@]} modules"
initramfs=$work/initramfs
mkdir -p "$initramfs/bin" "$initramfs/lib/modules"
cp "$busybox_bin" "$initramfs/bin/busybox"
install -m 0755 "$here/guest/init" "$initramfs/init"
for m in "${modules[@]}"; do
    ko=$(find "$work/lib/modules" -name "$m.ko" -print -quit)
    [[ -n $ko ]] || { echo "error: module $m.ko is not in $(basename "$deb")" >&2; exit 1; }
    cp "$ko" "$initramfs/lib/modules/"
done
echo "${modules[*]}" > "$initramfs/lib/modules/order"
find "$initramfs" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
# Uncompressed: unpacking a gzip'd initramfs costs more under TCG than reading the extra bytes.
(cd "$initramfs" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) \
    > "$work/initrd.img"

# -- disks -------------------------------------------------------------------------------------

# The service's tree: the CGI, its awk program, the contract, httpd's config and the settings
# /dynasoar/start reads.
service=$work/service-tree/service
mkdir -p "$service/www/cgi-bin"
cp -a "$here/guest/service/." "$service/"
cp "$here/VmEcho.wsdl" "$service/VmEcho.wsdl"
printf 'PORT=%s\nSERVICE_PATH=%s\nSERVICE_CGI=%s\n' "$port" "$path" "${path##*/}" \
    > "$service/service.conf"
[[ -x $service/www/cgi-bin/${path##*/} ]] || { echo "error: no CGI for $path" >&2; exit 1; }

make_fs() { # IMAGE TREE
    # File times come from the tree (E2FSPROGS_FAKE_TIME only fixes the filesystem's own).
    find "$2" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    truncate -s "${disk_mib}M" "$1"
    mke2fs -q -t ext2 -m 0 -L vm-echo -U "$fs_uuid" -E "root_owner=0:0,hash_seed=$fs_uuid" \
        -d "$2" "$1"
    # mke2fs stamps ctime with the clock and copies atimes that reading the tree just moved.
    (cd "$2" && find . -mindepth 1 | LC_ALL=C sort) | while read -r f; do
        for t in atime ctime; do echo "set_inode_field /${f#./} $t @$SOURCE_DATE_EPOCH"; done
    done > "$1.debugfs"
    debugfs -w -f "$1.debugfs" "$1" >/dev/null 2>&1
}
to_qcow2() { # RAW QCOW2
    qemu-img convert -f raw -O qcow2 -o cluster_size=16k "$1" "$2"
}
to_delta() { # RAW QCOW2 BACKING: a qcow2 overlay on BACKING holding only what differs from it
    # (`convert -B` would write every non-zero cluster). An empty overlay on the full image,
    # safely rebased onto the base, takes in exactly the clusters where the two differ.
    to_qcow2 "$1" "$1.qcow2"
    qemu-img create -q -f qcow2 -o cluster_size=16k -b "$1.qcow2" -F qcow2 "$2"
    qemu-img rebase -q -b "$3" -F qcow2 "$2"
    rm "$1.qcow2"
}

step "disks: base (runtime), full (runtime + service), overlay (service on the base)"
# The base is a busybox root filesystem: the runtime any CGI service can sit on.
base_tree=$work/base-tree
mkdir -p "$base_tree"/{bin,dev,proc,sys,tmp}
cp -a "$here/guest/base/." "$base_tree/"
cp "$busybox_bin" "$base_tree/bin/busybox"
for applet in $("$busybox_bin" --list); do
    [[ -e $base_tree/bin/$applet ]] || ln -s busybox "$base_tree/bin/$applet"
done
make_fs "$work/base.raw" "$base_tree"

full_tree=$work/full-tree
mkdir -p "$full_tree"
cp -a "$base_tree/." "$full_tree/"
cp -a "$work/service-tree/." "$full_tree/"
make_fs "$work/full.raw" "$full_tree"

# VmCounter: the same runtime, serving the counter (its state in the guest's /tmp, a tmpfs).
counter_tree=$work/counter-tree
mkdir -p "$counter_tree/service"
cp -a "$base_tree/." "$counter_tree/"
cp -a "$counter_src/guest/service/." "$counter_tree/service/"
cp "$counter_src/VmCounter.wsdl" "$counter_tree/service/VmCounter.wsdl"
printf 'PORT=%s\nSERVICE_PATH=/Counter\nSERVICE_CGI=Counter\n' "$port" \
    > "$counter_tree/service/service.conf"
make_fs "$work/counter.raw" "$counter_tree"

# The overlay's filesystem is the base's with the service written into it, so the two differ
# only in the blocks the service occupies (and the bitmaps and directories that point at them).
cp "$work/base.raw" "$work/overlay.raw"
{
    (cd "$work/service-tree" && find . -mindepth 1 -type d | LC_ALL=C sort | sed 's|^\./|mkdir /|')
    (cd "$work/service-tree" && find . -type f | LC_ALL=C sort) | while read -r f; do
        f=${f#./}
        echo "write $work/service-tree/$f /$f"
        echo "set_inode_field /$f mode 0100$(stat -c %a "$work/service-tree/$f")"
        echo "set_inode_field /$f uid 0"
        echo "set_inode_field /$f gid 0"
        for t in atime mtime ctime; do echo "set_inode_field /$f $t @$SOURCE_DATE_EPOCH"; done
    done
} > "$work/overlay.debugfs"
debugfs -w -f "$work/overlay.debugfs" "$work/overlay.raw" >/dev/null 2>"$work/debugfs.log" || {
    cat "$work/debugfs.log" >&2
    exit 1
}
grep -i "error\|could not\|not found" "$work/debugfs.log" >&2 && exit 1

to_qcow2 "$work/base.raw" "$out/base.qcow2"
base_sha=$(sha256sum "$out/base.qcow2" | cut -d' ' -f1)

# -- packages ----------------------------------------------------------------------------------

manifest() { # NAME DESCRIPTION [BASE]  (STATELESS, WSDL and SERVICE_URL_PATH: the caller's)
    cat <<EOF
# $2
# Built by deploy/services/vm-echo/build.sh from $(basename "$deb").
[service]
name = "$1"
version = "1.0"
kind = "vm"
stateless = ${STATELESS:-true}
wsdl = "${WSDL:-VmEcho.wsdl}"

[vm]
disk = "disk.qcow2"
EOF
    [[ -n ${3:-} ]] && echo "base = \"sha256:$3\""
    cat <<EOF
kernel = "$kernel_file"
initrd = "initrd.img"
port = $port
path = "${SERVICE_URL_PATH:-$path}"
memory_mib = $memory_mib
vcpus = 1
EOF
}

package() { # DIR [WSDL FILE]
    mkdir -p "$1"
    cp "${2:-$here/VmEcho.wsdl}" "$1/"
    # Hard links: the two packages share one copy of the (large) kernel on disk.
    ln "$work/$kernel_file" "$1/$kernel_file" 2>/dev/null || cp "$work/$kernel_file" "$1/"
    ln "$work/initrd.img" "$1/initrd.img" 2>/dev/null || cp "$work/initrd.img" "$1/"
}

package "$out/vm-echo"
to_qcow2 "$work/full.raw" "$out/vm-echo/disk.qcow2"
manifest "$name" "VmEcho: a busybox guest serving Echo and Compute (SOAP 1.1/1.2, WS-Addressing) over CGI." \
    > "$out/vm-echo/dynasoar.toml"

package "$out/vm-echo-overlay"
(cd "$out/vm-echo-overlay" && to_delta "$work/overlay.raw" disk.qcow2 ../base.qcow2)
manifest "${name}Overlay" "VmEcho as a qcow2 overlay on base.qcow2 (the runtime): ships only the service." \
    "$base_sha" > "$out/vm-echo-overlay/dynasoar.toml"

package "$counter_out/vm-counter" "$counter_src/VmCounter.wsdl"
to_qcow2 "$work/counter.raw" "$counter_out/vm-counter/disk.qcow2"
STATELESS=false WSDL=VmCounter.wsdl SERVICE_URL_PATH=/Counter manifest VmCounter \
    "VmCounter: a busybox guest counting Increment calls in its memory (stateful: dynasoar move carries the count)." \
    > "$counter_out/vm-counter/dynasoar.toml"

rm -rf "$work"
step "done: $(du -sh --apparent-size "$out/vm-echo" | cut -f1) package," \
    "kernel $(du -h --apparent-size "$out/vm-echo/$kernel_file" | cut -f1)," \
    "initrd $(du -h --apparent-size "$out/vm-echo/initrd.img" | cut -f1)," \
    "disk $(du -h --apparent-size "$out/vm-echo/disk.qcow2" | cut -f1)," \
    "base $(du -h --apparent-size "$out/base.qcow2" | cut -f1)," \
    "overlay $(du -h --apparent-size "$out/vm-echo-overlay/disk.qcow2" | cut -f1)"
