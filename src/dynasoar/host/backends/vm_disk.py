"""The disks of VM deployments, through ``qemu-img``: checking a package's qcow2 disk, and the
per-deployment overlay that takes all of a guest's writes, so that the package's files (which may
be the Host Provider's cached images) are never written."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dynasoar.errors import DeploymentFailed, InvalidPackage

QEMU_IMG_TIMEOUT = 30.0


@dataclass(frozen=True)
class DiskInfo:
    path: Path
    virtual_size: int
    backing: str | None
    data_file: str | None


def inspect(path: Path, what: str) -> DiskInfo:
    """Read a qcow2 image's header. The format is forced, never probed: a "raw" image whose
    first bytes look like a qcow2 header pointing at a host file is the classic trick."""
    try:
        done = subprocess.run(
            ["qemu-img", "info", "-U", "-f", "qcow2", "--output=json", str(path)],
            capture_output=True,
            timeout=QEMU_IMG_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeploymentFailed(f"qemu-img could not read {what}: {exc}") from exc
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip()
        raise InvalidPackage(f"{what} is not a usable qcow2 image: {message}")
    try:
        data = json.loads(done.stdout)
        size = int(data["virtual-size"])
        specific = data.get("format-specific", {}).get("data", {})
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DeploymentFailed(f"qemu-img info of {what} was not understood: {exc}") from exc
    return DiskInfo(path, size, data.get("backing-filename"), specific.get("data-file"))


def check_package_disk(info: DiskInfo, *, has_base: bool) -> None:
    """A package's disk may only reach files the Host Provider chooses: a backing file only
    when the manifest names a base (whose path the host supplies), never an external data file."""
    if info.data_file is not None:
        raise InvalidPackage("the package's disk uses an external qcow2 data file; ship one file")
    if info.backing is not None and not has_base:
        raise InvalidPackage(
            "the package's disk is a qcow2 overlay but its manifest names no [vm] base; "
            'add base = "sha256:<digest of the base image>" or ship a standalone disk'
        )
    if info.backing is None and has_base:
        raise InvalidPackage("the manifest names a [vm] base but the disk is not an overlay")


def check_base(info: DiskInfo) -> None:
    if info.backing is not None or info.data_file is not None:
        raise InvalidPackage("a base image must be a standalone qcow2 image (no backing file)")


def create_overlay(overlay: Path, backing: Path, size: int) -> None:
    """An empty qcow2 over ``backing`` (absolute path, format given, never probed). ``-u``: the
    backing chain is not opened here; libvirt is told the whole chain explicitly."""
    try:
        done = subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", "qcow2",
             "-b", str(backing.absolute()), str(overlay), str(size)],
            capture_output=True,
            timeout=QEMU_IMG_TIMEOUT,
            check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeploymentFailed(f"could not create the deployment's disk overlay: {exc}") from exc
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip()
        raise DeploymentFailed(f"could not create the deployment's disk overlay: {message}")
