"""The libvirt backend: each VM package runs as a transient libvirt domain (QEMU, TCG by default)
booted from a per-deployment qcow2 overlay, reachable on a 127.0.0.1 port forwarded into the
guest, ready once the guest's endpoint answers its WSDL probe. The only module importing libvirt.

How a caller uses it (the Host Provider)::

    backend = LibvirtBackend(uri, accel="tcg", scope=scope_for(data_dir))
    backend.clear_leftovers()      # at start: the domains a crashed run of this HP left behind
    started = backend.start(deployment_id, root, manifest, deadline, output=log, base_image=base)
    backend.stop(started.handle, grace)

``root`` is the unpacked package; its files (or the image-cache files they link to) are only
read. The guest writes into ``root.parent / "overlay.qcow2"``. Its serial console is a pair of
FIFOs (``root.parent / "console.in"``, ``"console.out"``, a libvirt ``pipe`` serial) whose
output the log pump drains into the deployment's log (``output``), bounded like a code
service's output.
For a manifest with ``[vm] base`` the package's disk is an overlay on that base: its path is
``base_image`` or, when not given, what the optional ``base_images`` callable answers for
``manifest.vm.base`` ("sha256:HEX"). The backing paths written inside the images are never
followed: the domain XML spells the whole chain out. Domains are named
``dynasoar-<scope>-<deployment id>``.

Domains are started with ``VIR_DOMAIN_START_AUTODESTROY``: libvirt destroys them when the
connection that created them closes, so a guest never outlives its Host Provider (killed, it
leaves no domain running; ``clear_leftovers`` at the next start is for what is left anyway). The
backend keeps that one connection open for as long as it runs; should it break (libvirtd
restarted), its guests go with it and ``alive`` reports them dead.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import libvirt
from lxml import etree

from dynasoar.errors import DeploymentFailed, DynasoarError, InvalidRequest
from dynasoar.host.backends import Started, vm_disk
from dynasoar.host.backends.kvm_probe import KvmVerdicts
from dynasoar.host.backends.vm_domain import DYN_NS, Accel, DomainSpec, default_template, render
from dynasoar.host.backends.vm_ready import console_tail, ensure_daemons, free_port, wait_ready
from dynasoar.host.logstore import ServiceLog
from dynasoar.package import Manifest, VmSection

log = logging.getLogger(__name__)

AccelOption = Literal["tcg", "kvm", "auto"]
_ACCEL_NOTES: dict[Accel, str] = {
    "tcg": "under TCG (emulation)",
    "kvm": "under KVM (a paravirtual /dev/kvm hangs stock kernels: try --accel tcg)",
}
DEFAULT_CMDLINE = "console=ttyS0 quiet panic=-1"
NAME_PREFIX = "dynasoar-"
#: a KVM probe boot that has not served by then counts as failed (TCG boots in ~5 s here)
KVM_PROBE_SECONDS = 15.0
PORT_ATTEMPTS = 3
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # deployment ids and scopes: in names


@dataclass
class VmDeployment:
    """The handle of a running VM deployment."""

    domain: str
    overlay: Path
    console: Path  # the FIFOs' common name (without .in / .out)
    endpoint: str
    accel: Accel


@dataclass(frozen=True)
class _Boot:
    """One deployment's boot, whichever accelerator it gets."""

    deployment_id: str
    name: str  # the domain's
    root: Path
    vm: VmSection
    chain: tuple[Path, ...]  # the disk, top first: overlay, package disk, base
    console: Path
    output: ServiceLog


def scope_for(data_dir: Path) -> str:
    """A stable tag of one Host Provider (its data directory), part of its domains' names, so
    that clearing leftovers never touches another HP's domains on the same libvirt."""
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]


class LibvirtBackend:
    name = "libvirt"

    def __init__(
        self,
        uri: str = "qemu:///system",
        *,
        accel: AccelOption = "tcg",
        scope: str = "default",
        base_images: Callable[[str], Path] | None = None,
        kernel_cmdline: str = DEFAULT_CMDLINE,
        template: Path | None = None,
        kvm_verdicts: KvmVerdicts | None = None,
        kvm_probe_seconds: float = KVM_PROBE_SECONDS,
        listen: str = "127.0.0.1",
    ) -> None:
        if accel not in ("tcg", "kvm", "auto"):
            raise ValueError(f"accel must be tcg, kvm or auto, not {accel!r}")
        if not _ID.match(scope):
            raise ValueError(f"scope must be letters, digits and '-', not {scope!r}")
        self.uri = uri
        self.accel = accel
        self.scope = scope
        self._base_images = base_images
        self._cmdline = kernel_cmdline
        self._template = template or default_template()
        self._kvm = kvm_verdicts or KvmVerdicts()
        self._kvm_probe_seconds = kvm_probe_seconds
        self._listen = listen  # where guests' ports are forwarded from
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.Lock()

    # -- the Backend protocol ------------------------------------------------------------------

    def start(
        self,
        deployment_id: str,
        root: Path,
        manifest: Manifest,
        deadline: float,
        *,
        output: ServiceLog,
        base_image: Path | None = None,
    ) -> Started:
        vm = manifest.vm
        if vm is None:
            raise InvalidRequest(f"{manifest.name} is a {manifest.kind} package, not a VM image")
        if not _ID.match(deployment_id):
            raise InvalidRequest(f"unusable deployment id {deployment_id!r}")
        root = root.absolute()
        chain, size = self._disk_chain(root, vm, base_image)
        overlay = root.parent / "overlay.qcow2"
        vm_disk.create_overlay(overlay, chain[0], size)
        boot = _Boot(
            deployment_id=deployment_id,
            name=self.domain_name(deployment_id),
            root=root,
            vm=vm,
            chain=(overlay, *chain),
            console=root.parent / "console",
            output=output,
        )
        try:
            _console_fifos(boot.console, output)
            running = self._boot(boot, deadline)
        except BaseException:
            _unlink(overlay)
            raise
        log.info("VM %s serving at %s (%s)", running.domain, running.endpoint, running.accel)
        return Started(endpoint=running.endpoint, handle=running)

    def stop(self, handle: object, grace: float) -> bool:
        """Destroy (QEMU is killed: the overlay is about to be deleted, so there is nothing to
        flush) and undefine the domain, then delete its overlay. ``grace`` is not needed.
        Returns whether the guest had stopped by itself."""
        assert isinstance(handle, VmDeployment)
        by_itself = not self.alive(handle)
        self._remove_domain(handle.domain)
        _unlink(handle.overlay)
        return by_itself

    def alive(self, handle: object) -> bool:
        assert isinstance(handle, VmDeployment)
        try:
            return bool(self._connection().lookupByName(handle.domain).isActive())
        except (libvirt.libvirtError, DynasoarError):
            return False

    def usage(self, handle: object) -> tuple[float, int]:
        """The guest's CPU time and resident memory, from libvirt's domain statistics."""
        assert isinstance(handle, VmDeployment)
        try:
            domain = self._connection().lookupByName(handle.domain)
            totals: Any = domain.getCPUStats(True)  # [{"cpu_time": ns, ...}]
            memory: Any = domain.memoryStats()  # {"rss": KiB, "actual": KiB, ...}
            cpu = totals[0].get("cpu_time", 0) / 1e9
        except libvirt.libvirtError as exc:
            raise DeploymentFailed(f"libvirt has no statistics of {handle.domain}: {exc}") from exc
        return float(cpu), int(memory.get("rss", memory.get("actual", 0))) * 1024

    # -- housekeeping --------------------------------------------------------------------------

    def clear_leftovers(self) -> list[str]:
        """Destroy and undefine the domains of this scope that a previous run left behind (the
        HP crashed), deleting the overlays they record. Returns their names."""
        prefix = f"{NAME_PREFIX}{self.scope}-"
        try:
            domains = self._connection().listAllDomains(0)
        except libvirt.libvirtError as exc:
            raise DeploymentFailed(f"libvirt ({self.uri}) cannot list domains: {exc}") from exc
        cleared = []
        for domain in domains:
            name = domain.name()
            if not name.startswith(prefix):
                continue
            overlay = _recorded_overlay(domain)
            self._remove_domain(name)
            if overlay is not None:
                _unlink(overlay)
            cleared.append(name)
        if cleared:
            log.warning("removed %d VM deployment(s) left behind: %s", len(cleared), cleared)
        return cleared

    def problem(self) -> str | None:
        """Why this backend cannot run VMs now (libvirt does not answer), or None. A call
        (not only the connection's own idea of being alive) tells a dead connection; one is
        opened again at once if it can be."""
        for _ in range(2):
            try:
                self._connection().getLibVersion()
                return None
            except libvirt.libvirtError as exc:
                reason = f"libvirt at {self.uri} does not answer: {exc}"
                self.close()  # the next use (or this loop) connects anew
            except DeploymentFailed as exc:
                reason = exc.reason
        return reason

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    def domain_name(self, deployment_id: str) -> str:
        return f"{NAME_PREFIX}{self.scope}-{deployment_id}"

    # -- steps ---------------------------------------------------------------------------------

    def _disk_chain(
        self, root: Path, vm: VmSection, base_image: Path | None
    ) -> tuple[tuple[Path, ...], int]:
        """The package's disk and, for an overlay package, the base it sits on (both only read),
        and the disk's virtual size."""
        disk = root / vm.disk
        info = vm_disk.inspect(disk, "the disk")
        vm_disk.check_package_disk(info, has_base=vm.base is not None)
        if vm.base is None:
            return (disk,), info.virtual_size
        if base_image is None and self._base_images is not None:
            base_image = self._base_images(vm.base)
        if base_image is None or not base_image.is_file():
            raise DeploymentFailed(
                f"the disk is an overlay on base {vm.base}, which this host does not hold"
                + (f" (not at {base_image})" if base_image is not None else "")
            )
        vm_disk.check_base(vm_disk.inspect(base_image, f"the base image {vm.base}"))
        return (disk, base_image.absolute()), info.virtual_size

    def _boot(self, boot: _Boot, deadline: float) -> VmDeployment:
        if self.accel != "auto":
            return self._boot_ready(boot, self.accel, deadline)
        verdict = self._kvm.get()
        if verdict is not None:
            return self._boot_ready(boot, "kvm" if verdict else "tcg", deadline)
        # The probe: this very deployment, booted under KVM within a bound. If it serves, KVM
        # works; if it does not but TCG then does, KVM does not. A package that fails under both
        # says nothing about KVM, so nothing is remembered.
        probe_deadline = min(deadline, time.monotonic() + self._kvm_probe_seconds)
        try:
            running = self._boot_ready(boot, "kvm", probe_deadline)
        except DynasoarError as exc:
            log.warning("KVM probe boot failed (%s); using TCG", exc.reason.splitlines()[0])
        else:
            self._kvm.put(True)
            return running
        running = self._boot_ready(boot, "tcg", deadline)
        self._kvm.put(False)
        return running

    def _boot_ready(self, boot: _Boot, accel: Accel, deadline: float) -> VmDeployment:
        """Create the domain and wait for its endpoint; on any failure remove the domain."""
        running = self._create(boot, accel)
        try:
            wait_ready(
                running.endpoint,
                deadline,
                alive=lambda: self.alive(running),
                describe=lambda: f"{_ACCEL_NOTES[accel]}; guest console: " + _console(boot.output),
            )
        except BaseException:
            self._remove_quietly(running.domain)
            raise
        return running

    def _create(self, boot: _Boot, accel: Accel) -> VmDeployment:
        conn = self._connection()
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port(self._listen)
            try:
                conn.createXML(
                    render(self._spec(boot, accel, port), self._template),
                    libvirt.VIR_DOMAIN_START_AUTODESTROY,  # gone when this HP's connection is
                )
            except libvirt.libvirtError as exc:
                # Another process may have taken the port between our look and QEMU's bind.
                if "host forwarding" in str(exc) and attempt < PORT_ATTEMPTS:
                    continue
                raise DeploymentFailed(
                    f"libvirt could not start the VM {_ACCEL_NOTES[accel]}: {exc}"
                ) from exc
            endpoint = f"http://{self._listen}:{port}{boot.vm.path}"
            return VmDeployment(boot.name, boot.chain[0], boot.console, endpoint, accel)
        raise AssertionError("unreachable")

    def _spec(self, boot: _Boot, accel: Accel, port: int) -> DomainSpec:
        vm = boot.vm
        return DomainSpec(
            name=boot.name,
            deployment_id=boot.deployment_id,
            scope=self.scope,
            accel=accel,
            memory_mib=vm.memory_mib,
            vcpus=vm.vcpus,
            disk_chain=boot.chain,
            kernel=boot.root / vm.kernel if vm.kernel else None,
            initrd=boot.root / vm.initrd if vm.initrd else None,
            cmdline=self._cmdline,
            console=boot.console,
            host_port=port,
            guest_port=vm.port,
            uid=os.getuid(),
            gid=os.getgid(),
            listen=self._listen,
        )

    def _remove_quietly(self, name: str) -> None:
        """Cleanup on a failure path: the failure is what the caller needs to hear."""
        try:
            self._remove_domain(name)
        except DynasoarError as exc:
            log.error("could not remove the failed VM %s: %s", name, exc.reason)

    def _remove_domain(self, name: str) -> None:
        """Destroy (if running) and undefine (if persistent); a domain already gone is fine."""
        try:
            domain = self._connection().lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise DeploymentFailed(f"libvirt could not look up {name}: {exc}") from exc
            _remove_qemu_log(self.uri, name)  # a transient domain that powered off is gone
            return
        for step in (domain.destroy, domain.undefine):
            try:
                step()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in (
                    libvirt.VIR_ERR_NO_DOMAIN,
                    libvirt.VIR_ERR_OPERATION_INVALID,  # not running / transient
                ):
                    raise DeploymentFailed(f"libvirt could not remove {name}: {exc}") from exc
        _remove_qemu_log(self.uri, name)

    def _connection(self) -> libvirt.virConnect:
        with self._lock:
            if self._conn is not None and self._conn.isAlive():
                return self._conn
            self._conn = _open(self.uri)
            return self._conn


def _open(uri: str) -> libvirt.virConnect:
    if uri.startswith("qemu:///system"):
        ensure_daemons()  # a bare machine (no systemd) has no libvirtd running yet
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise DeploymentFailed(
            f"cannot connect to libvirt at {uri}: {exc}; is libvirtd running "
            "(scripts/start-libvirt.sh starts it and virtlogd)?"
        ) from exc


def _console_fifos(console: Path, output: ServiceLog) -> None:
    """The guest's serial console: QEMU writes ``console.out`` and reads ``console.in`` (nothing
    is ever typed into it). The pump holds ``console.out`` open for reading and writing, so it
    sees no end when a QEMU goes (a KVM probe boot, then TCG) and reads until released."""
    for end in (".in", ".out"):
        os.mkfifo(f"{console}{end}", 0o600)
    output.attach(os.open(f"{console}.out", os.O_RDWR | os.O_NONBLOCK))


def _console(output: ServiceLog) -> str:
    output.drain()
    return console_tail(output.tail_bytes(800))


def _recorded_overlay(domain: libvirt.virDomain) -> Path | None:
    """The overlay a domain of ours recorded in its metadata (see vm_domain)."""
    try:
        xml = domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, DYN_NS)
        overlay = etree.fromstring(xml.encode()).get("overlay")
    except (libvirt.libvirtError, etree.XMLSyntaxError):
        return None
    path = Path(overlay) if overlay else None
    return path if path is not None and path.name == "overlay.qcow2" else None


def _remove_qemu_log(uri: str, name: str) -> None:
    """libvirtd keeps a log per domain name; a deployment's is of no use once it is gone."""
    if uri.startswith("qemu:///system"):
        _unlink(Path("/var/log/libvirt/qemu") / f"{name}.log")


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _silence_default_handler(_ctx: object, _error: object) -> None:
    """libvirt prints every error to stderr by default; ours are raised, wrapped, instead."""


libvirt.registerErrorHandler(_silence_default_handler, None)
