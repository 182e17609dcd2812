"""The service at a chosen size: the echo sample's code package, or the vm-echo overlay package,
padded with incompressible bytes so that what travels is the size asked for.

- code: a ``padding.bin`` of random bytes beside the service's files, so that the package's
  ``.tar.gz`` is ``size`` bytes (gzip cannot shrink random data);
- vm: the overlay disk of ``vm-echo-overlay`` grown by ``size`` bytes of random data written
  past the end of the guest's own disk (the guest never reads them), so the overlay that
  travels is ``size`` bytes plus its own ~0.2 MiB. Its runtime (base image, kernel, initrd:
  ~70 MiB) is shared by every VM package; it travels only to a host that does not hold it.

Each variant gets its own random bytes, so its digest is new to every cache."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dynasoar.images import sha256_file
from dynasoar.package import load_manifest, pack
from dynasoar.paths import samples_dir
from dynasoar.qcow2 import backing_file

RANDOM_BLOCK = 1 << 20
VM_PACKAGE = "vm-echo/build/vm-echo-overlay"


@dataclass(frozen=True)
class Package:
    name: str  # the service name (what /services/NAME advertises)
    root: Path  # the package directory
    nominal: int  # the size asked for (the grid's)
    size: int  # bytes of the service-specific part that travels (archive or overlay disk)
    archive: Path | None = None  # a code package's .tar.gz, packed once
    sha256: str = ""  # of the archive


def _random_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left > 0:
            f.write(os.urandom(min(RANDOM_BLOCK, left)))
            left -= min(RANDOM_BLOCK, left)


def _rename(root: Path, name: str) -> None:
    manifest = root / "dynasoar.toml"
    text = re.sub(r'(?m)^name = "[^"]*"', f'name = "{name}"', manifest.read_text(), count=1)
    manifest.write_text(text)


def code_package(work: Path, name: str, size: int) -> Package:
    """The echo sample as service ``name``, its archive padded to ``size`` bytes."""
    root = work / name
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(samples_dir() / "echo", root, ignore=shutil.ignore_patterns("__pycache__"))
    _rename(root, name)
    archive = work / f"{name}.tar.gz"
    pack(root, archive)
    padding = max(0, size - archive.stat().st_size - 1024)  # tar headers and gzip framing
    _random_file(root / "padding.bin", padding)
    pack(root, archive)
    return Package(name, root, size, archive.stat().st_size, archive, sha256_file(archive))


def vm_available() -> bool:
    return (samples_dir() / VM_PACKAGE / "dynasoar.toml").is_file()


def vm_package(work: Path, name: str, size: int, snapshot: bool = False) -> Package:
    """vm-echo-overlay as service ``name``, its overlay disk grown by ``size`` random bytes;
    booted always (``[vm] snapshot = false``) unless ``snapshot``."""
    source = samples_dir() / VM_PACKAGE
    root = work / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    manifest = load_manifest(source)
    assert manifest.vm is not None
    shared = {manifest.vm.kernel, manifest.vm.initrd} - {None}
    for entry in source.iterdir():
        target = root / entry.name
        if entry.name in shared:
            _link_or_copy(entry, target)  # the runtime is the same file for every variant
        else:
            shutil.copy2(entry, target)
    _rename(root, name)
    if not snapshot:
        toml = root / "dynasoar.toml"
        toml.write_text(toml.read_text().replace("[vm]\n", "[vm]\nsnapshot = false\n", 1))
    disk = root / manifest.vm.disk
    base = _base(source / manifest.vm.disk)
    _qemu_img("rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(disk))
    if size > 0:
        virtual = _virtual_size(disk)
        _qemu_img("resize", "-f", "qcow2", str(disk), str(virtual + _round_up(size)))
        noise = root.parent / f"{name}.noise"
        _random_file(noise, size)
        try:
            subprocess.run(
                [
                    "qemu-io",
                    "-f",
                    "qcow2",
                    "-c",
                    f"write -q -s {noise} {virtual} {size}",
                    str(disk),
                ],
                check=True,
                capture_output=True,
                timeout=600,
            )
        finally:
            noise.unlink(missing_ok=True)
    return Package(name, root, size, disk.stat().st_size)


def vm_runtime_bytes() -> int:
    """What a host without the runtime receives besides the overlay: base, kernel, initrd."""
    source = samples_dir() / VM_PACKAGE
    manifest = load_manifest(source)
    assert manifest.vm is not None
    files = [source / f for f in (manifest.vm.kernel, manifest.vm.initrd) if f is not None]
    files.append(_base(source / manifest.vm.disk))
    return sum(f.stat().st_size for f in files)


def _round_up(size: int, unit: int = 1 << 20) -> int:
    return -(-size // unit) * unit


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _qemu_img(*args: str) -> str:
    done = subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"qemu-img {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _base(disk: Path) -> Path:
    base = backing_file(disk)
    if base is None:
        raise RuntimeError(f"{disk} is not an overlay")
    return base


def _virtual_size(disk: Path) -> int:
    match = re.search(
        r"virtual size: .*\((\d+) bytes\)", _qemu_img("info", "-U", "-f", "qcow2", str(disk))
    )
    if match is None:
        raise RuntimeError(f"qemu-img info did not give the virtual size of {disk}")
    return int(match.group(1))
