"""Small VM packages for tests that need the package format, not a bootable guest: real qcow2
images made with qemu-img (a base with data, overlays on it), a stand-in kernel."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from dynasoar.images import sha256_file
from dynasoar.paths import samples_dir

MANIFEST = """[service]
name = "{name}"
version = "1.0"
kind = "vm"
stateless = true
wsdl = "Echo.wsdl"

[vm]
disk = "disk.qcow2"
kernel = "vmlinux"
{base}port = 8000
path = "/Echo"
memory_mib = 128
vcpus = 1
"""


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def make_base(directory: Path, mib: int = 4) -> Path:
    """A qcow2 base image holding ``mib`` MiB of incompressible data."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / "base.raw"
    raw.write_bytes(os.urandom(mib << 20))
    base = directory / "base.qcow2"
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(base))
    raw.unlink()
    return base


def make_vm_package(
    directory: Path,
    name: str,
    base: Path | None = None,
    kernel: bytes = b"\x7fELF stand-in kernel" * 1000,
) -> Path:
    """A VM package: its disk a fresh image, or an overlay on ``base`` with a little data."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(samples_dir() / "echo" / "Echo.wsdl", directory / "Echo.wsdl")
    (directory / "vmlinux").write_bytes(kernel)
    disk = directory / "disk.qcow2"
    if base is None:
        qemu_img("create", "-f", "qcow2", str(disk), "8M")
        base_line = ""
    else:
        qemu_img("create", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(disk))
        # a little data of the service's own on top of the base (differing per service)
        pattern = sum(name.encode()) % 255 + 1
        subprocess.run(
            ["qemu-io", "-c", f"write -P {pattern} 0 64k", str(disk)],
            check=True,
            capture_output=True,
        )
        base_line = f'base = "sha256:{sha256_file(base)}"\n'
    (directory / "dynasoar.toml").write_text(MANIFEST.format(name=name, base=base_line))
    return directory
