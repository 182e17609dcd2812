"""Saving and restoring guests, without libvirt: the libvirt snapshot document that saves a
running guest (its memory to a file, its disk's top frozen under a new one), the memory state
taken out of libvirt's save file as the QEMU migration stream it holds, and the platform
(machine type, CPU model, accelerator) a restore must match.

How a save and a restore go (measured on QEMU 7.2 / libvirt 9.0, TCG, the vm-echo guest):
libvirt's external snapshot of a running transient domain pauses it for ~0.2 s, writes the
memory and switches the disk. A restored copy is *not* ``virDomainRestoreFlags``: its XML may
change the port forward (libvirt accepts another ``hostfwd``), but not the domain's name or
UUID ("Target domain name ... does not match source"), so two copies could not run side by
side, and it cannot start the domain with ``VIR_DOMAIN_START_AUTODESTROY`` (a copy would
outlive its Host Provider). Instead
the copy is a new domain (its own name, UUID, overlay, port forward and VM generation ID)
created paused with ``-incoming defer``; the memory stream is handed to QEMU on the monitor
(``getfd`` + ``migrate-incoming fd:``), then the guest resumes: ~1 s in all.

The memory state is kept and shipped compressed (``zstd -1``: vm-echo's 57 MB stream becomes
17 MB in ~0.2 s) and decompressed into a pipe as QEMU reads it; a file that starts like a bare
QEMU stream is read as it is.
"""

from __future__ import annotations

import os
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from dynasoar.errors import DeploymentFailed
from dynasoar.snapshots import Platform

#: libvirt's save file header (src/qemu/qemu_saveimage.h): magic, then version, the length of
#: the domain XML that follows, was_running, compressed, cookie offset, and 14 unused words.
SAVE_MAGIC = (b"LibvirtQemudSave", b"LibvirtQemudPart")
SAVE_HEADER = struct.Struct("<16s5I14I")
#: A QEMU migration stream starts with QEMU_VM_FILE_MAGIC; a zstd frame with its own magic.
QEMU_MAGIC = b"QEVM"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: zstd's fastest level with its long-distance matching off: about 3.5x on a guest's memory.
COMPRESS = ("zstd", "-1", "-q", "-c")
ZSTD_SECONDS = 120.0


@dataclass(frozen=True)
class Capture:
    """A guest just saved: its memory (in libvirt's save format, in the deployment's
    directory), the disk layer it had written until then (frozen now), its platform."""

    memory: Path
    layer: Path
    platform: Platform


@dataclass(frozen=True)
class Restore:
    """What a copy starts from: the memory stream and the disk layers it sits on (lowest
    first, all only read), taken on ``platform``."""

    memory: Path
    layers: tuple[Path, ...]
    platform: Platform


def snapshot_xml(memory: Path, top: Path) -> str:
    """libvirt's external snapshot of a running domain: memory to ``memory``, and the disk's
    current top frozen under a new, empty ``top`` that takes the guest's writes from now on."""
    root = etree.Element("domainsnapshot")
    etree.SubElement(root, "memory", snapshot="external", file=str(memory))
    disks = etree.SubElement(root, "disks")
    disk = etree.SubElement(disks, "disk", name="vda", snapshot="external", type="file")
    etree.SubElement(disk, "driver", type="qcow2")
    etree.SubElement(disk, "source", file=str(top))
    return str(etree.tostring(root, encoding="unicode"))


def extract_stream(save_file: Path, target: Path) -> None:
    """The QEMU migration stream in a libvirt save file (raw, not compressed), written to
    ``target`` compressed."""
    try:
        # Unbuffered: the compressor reads the descriptor from where our last seek put it.
        with save_file.open("rb", buffering=0) as source:
            header = source.read(SAVE_HEADER.size)
            if len(header) < SAVE_HEADER.size:
                raise DeploymentFailed(f"{save_file.name} is too short for a libvirt save file")
            magic, version, xml_length, _, compressed, *_ = SAVE_HEADER.unpack(header)
            if magic not in SAVE_MAGIC or version != 2:
                raise DeploymentFailed(f"{save_file.name} is not a libvirt save file (v2)")
            if compressed != 0:
                raise DeploymentFailed(
                    f'{save_file.name} is compressed: set save_image_format = "raw" in '
                    "libvirt's qemu.conf"
                )
            source.seek(SAVE_HEADER.size + xml_length)
            if source.read(len(QEMU_MAGIC)) != QEMU_MAGIC:
                raise DeploymentFailed(f"{save_file.name} holds no QEMU migration stream")
            source.seek(SAVE_HEADER.size + xml_length)
            with target.open("wb") as out:
                done = subprocess.run(
                    COMPRESS, stdin=source, stdout=out, stderr=subprocess.PIPE,
                    timeout=ZSTD_SECONDS, check=False,
                )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeploymentFailed(f"could not keep the guest's memory state: {exc}") from exc
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip()
        raise DeploymentFailed(f"could not compress the guest's memory state: {said}")


def is_stream(path: Path) -> bool:
    """Whether ``path`` starts like a memory state: compressed, or a bare QEMU stream."""
    try:
        with path.open("rb") as f:
            return f.read(len(QEMU_MAGIC)) in (QEMU_MAGIC, ZSTD_MAGIC)
    except OSError:
        return False


class StreamReader:
    """A memory state as QEMU reads it: a descriptor of the bare stream (a compressed file is
    decompressed into a pipe as it is read). Close it once QEMU has it."""

    def __init__(self, path: Path) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        with path.open("rb") as f:
            compressed = f.read(len(ZSTD_MAGIC)) == ZSTD_MAGIC
        if not compressed:
            self.fd = os.open(path, os.O_RDONLY)
            return
        self._process = subprocess.Popen(
            ["zstd", "-d", "-q", "-c", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self._process.stdout is not None
        self.fd = self._process.stdout.fileno()

    def close(self) -> None:
        """Our end of it (QEMU holds its own): the decompressor runs on until it is read."""
        if self._process is None:
            os.close(self.fd)
        elif self._process.stdout is not None:
            self._process.stdout.close()

    def finish(self) -> None:
        """After the load: the decompressor reaped (killed, if the load ended early)."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait(timeout=10)


def cpu_of(domain: etree._Element) -> str:
    """The CPU model a domain's XML asks for: its mode, or its custom model's name."""
    cpu = domain.find("cpu")
    if cpu is None:
        return "default"
    mode = cpu.get("mode", "custom")
    model = (cpu.findtext("model") or "").strip()
    return f"{mode}:{model}" if mode == "custom" and model else mode


def machine_of(domain: etree._Element) -> str:
    os_type = domain.find("os/type")
    return (os_type.get("machine") if os_type is not None else None) or "pc"


def canonical_machine(capabilities: str, machine: str, arch: str = "x86_64") -> str:
    """The machine type an alias (``pc``) stands for on this host, from libvirt's
    capabilities; a name that is no alias stands for itself."""
    root = etree.fromstring(capabilities.encode())
    for element in root.iterfind(f"guest/arch[@name='{arch}']//machine"):
        if (element.text or "").strip() == machine and element.get("canonical"):
            return str(element.get("canonical"))
    return machine
