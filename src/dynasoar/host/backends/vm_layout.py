"""A VM deployment laid out before its guest starts, without libvirt: its disk chain (a new
overlay on the package's disk, or on the layers of a snapshot above it, then the base), its
console FIFOs, and the domain's variable parts (:class:`~.vm_domain.DomainSpec`)."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dynasoar.errors import DeploymentFailed, InvalidRequest
from dynasoar.host.backends import vm_disk
from dynasoar.host.backends.vm_domain import Accel, DomainSpec
from dynasoar.host.backends.vm_ready import console_fifos, unlink
from dynasoar.host.logstore import ServiceLog
from dynasoar.package import Manifest, VmSection

#: Deployment ids and scopes: they go into domain names.
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
NAME_PREFIX = "dynasoar-"


@dataclass
class VmDeployment:
    """The handle of a running VM deployment."""

    domain: str
    overlay: Path  # the disk's top: the guest writes here
    console: Path  # the FIFOs' common name (without .in / .out)
    endpoint: str
    accel: Accel
    saves: int = 0  # how often it was saved (each save froze the top under a new one)


@dataclass(frozen=True)
class Boot:
    """One deployment's start, whichever accelerator it gets, booted or restored."""

    deployment_id: str
    name: str  # the domain's
    root: Path
    vm: VmSection
    chain: tuple[Path, ...]  # the disk, top first: overlay, [snapshot layers], disk, [base]
    console: Path
    output: ServiceLog


def scope_for(data_dir: Path) -> str:
    """A stable tag of one Host Provider (its data directory), part of its domains' names, so
    that clearing leftovers never touches another HP's domains on the same libvirt."""
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]


def domain_name(scope: str, deployment_id: str) -> str:
    return f"{NAME_PREFIX}{scope}-{deployment_id}"


def prepare(
    scope: str,
    deployment_id: str,
    root: Path,
    manifest: Manifest,
    output: ServiceLog,
    base_image: Path | None,
    layers: tuple[Path, ...] = (),
    base_images: Callable[[str], Path] | None = None,
) -> Boot:
    """The deployment's disk (a new overlay on the package's disk, or on the saved ``layers``
    above it, lowest first) and console; what a boot or a restore starts from. ``base_image``
    is the base a package's disk is an overlay on, when its manifest names one (else what
    ``base_images`` answers for its digest)."""
    vm = manifest.vm
    if vm is None:
        raise InvalidRequest(f"{manifest.name} is a {manifest.kind} package, not a VM image")
    if not ID.match(deployment_id):
        raise InvalidRequest(f"unusable deployment id {deployment_id!r}")
    root = root.absolute()
    chain, size = disk_chain(root, vm, base_image, base_images)
    below = (*(layer.absolute() for layer in reversed(layers)), *chain)
    overlay = root.parent / "overlay.qcow2"
    unlink(overlay)  # a restore that failed before this boot left its own
    vm_disk.create_overlay(overlay, below[0], size)
    boot = Boot(
        deployment_id=deployment_id,
        name=domain_name(scope, deployment_id),
        root=root,
        vm=vm,
        chain=(overlay, *below),
        console=root.parent / "console",
        output=output,
    )
    try:
        if not Path(f"{boot.console}.out").exists():  # a failed restore made them already
            console_fifos(boot.console, output)
    except BaseException:
        unlink(overlay)
        raise
    return boot


def disk_chain(
    root: Path,
    vm: VmSection,
    base_image: Path | None,
    base_images: Callable[[str], Path] | None = None,
) -> tuple[tuple[Path, ...], int]:
    """The package's disk and, for an overlay package, the base it sits on (both only read),
    and the disk's virtual size."""
    disk = root / vm.disk
    info = vm_disk.inspect(disk, "the disk")
    vm_disk.check_package_disk(info, has_base=vm.base is not None)
    if vm.base is None:
        return (disk,), info.virtual_size
    if base_image is None and base_images is not None:
        base_image = base_images(vm.base)
    if base_image is None or not base_image.is_file():
        raise DeploymentFailed(
            f"the disk is an overlay on base {vm.base}, which this host does not hold"
            + (f" (not at {base_image})" if base_image is not None else "")
        )
    vm_disk.check_base(vm_disk.inspect(base_image, f"the base image {vm.base}"))
    return (disk, base_image.absolute()), info.virtual_size


def domain_spec(
    boot: Boot, accel: Accel, port: int, *, scope: str, cmdline: str, listen: str
) -> DomainSpec:
    vm = boot.vm
    return DomainSpec(
        name=boot.name,
        deployment_id=boot.deployment_id,
        scope=scope,
        accel=accel,
        memory_mib=vm.memory_mib,
        vcpus=vm.vcpus,
        disk_chain=boot.chain,
        kernel=boot.root / vm.kernel if vm.kernel else None,
        initrd=boot.root / vm.initrd if vm.initrd else None,
        cmdline=cmdline,
        console=boot.console,
        host_port=port,
        guest_port=vm.port,
        uid=os.getuid(),
        gid=os.getgid(),
        listen=listen,
    )
