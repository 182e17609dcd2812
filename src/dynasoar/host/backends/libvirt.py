"""The libvirt backend: each VM package runs as a transient libvirt domain (QEMU, TCG by default)
booted from a per-deployment qcow2 overlay, reachable on a 127.0.0.1 port forwarded into the
guest, ready once the guest's endpoint answers its WSDL probe. The only module importing libvirt;
what it does with guests (boot, restore a copy of a saved one, save, resume) is
:class:`~.vm_backend.VmBackend`'s, this module's are the hypervisor's calls.

How a caller uses it (the Host Provider)::

    backend = LibvirtBackend(uri, accel="tcg", scope=scope_for(data_dir))
    backend.clear_leftovers()      # at start: the domains a crashed run of this HP left behind
    started = backend.start(deployment_id, root, manifest, deadline, output=log, base_image=base)
    saved = backend.capture(started.handle, pause=False)   # memory + disk (see vm_save)
    copy = backend.restore(other_id, root2, manifest, deadline, restore, output=log2)
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

Domains are started with ``VIR_DOMAIN_START_AUTODESTROY`` (restored copies too): libvirt
destroys them when the connection that created them closes, so a guest never outlives its Host
Provider (killed, it leaves no domain running; ``clear_leftovers`` at the next start is for what
is left anyway). The backend keeps that one connection open for as long as it runs; should it
break (libvirtd restarted), its guests go with it and ``alive`` reports them dead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu
from lxml import etree

from dynasoar.errors import DeploymentFailed, DeploymentTimeout, DynasoarError
from dynasoar.host.backends.kvm_probe import KvmVerdicts
from dynasoar.host.backends.vm_backend import (
    DEFAULT_CMDLINE,
    KVM_PROBE_SECONDS,
    AccelOption,
    PortTaken,
    VmBackend,
)
from dynasoar.host.backends.vm_domain import DYN_NS
from dynasoar.host.backends.vm_layout import VmDeployment, scope_for
from dynasoar.host.backends.vm_ready import ensure_daemons, unlink
from dynasoar.host.backends.vm_save import StreamReader

log = logging.getLogger(__name__)

__all__ = ["AccelOption", "LibvirtBackend", "VmDeployment", "scope_for"]


class LibvirtBackend(VmBackend):
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
        super().__init__(
            accel=accel,
            scope=scope,
            base_images=base_images,
            kernel_cmdline=kernel_cmdline,
            template=template,
            kvm_verdicts=kvm_verdicts,
            kvm_probe_seconds=kvm_probe_seconds,
            listen=listen,
        )
        self.uri = uri
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.Lock()

    # -- the hypervisor's part ------------------------------------------------------------------

    def _create_domain(self, xml: str, *, paused: bool) -> None:
        flags = libvirt.VIR_DOMAIN_START_AUTODESTROY  # gone when this HP's connection is
        if paused:
            flags |= libvirt.VIR_DOMAIN_START_PAUSED
        try:
            self._connection().createXML(xml, flags)
        except libvirt.libvirtError as exc:
            if "host forwarding" in str(exc):
                raise PortTaken(str(exc)) from exc
            raise DeploymentFailed(f"libvirt could not start the VM: {exc}") from exc

    def _load(self, name: str, memory: Path, deadline: float) -> None:
        """Hand QEMU (waiting with ``-incoming defer``) the memory stream on its monitor, as a
        file descriptor, and wait until it has loaded it."""
        domain = self._domain(name)
        stream = StreamReader(memory)
        try:
            try:
                libvirt_qemu.qemuMonitorCommandWithFiles(
                    domain, _qmp("getfd", fdname="snapshot"), [stream.fd], 0
                )
            except libvirt.libvirtError as exc:
                raise DeploymentFailed(f"QEMU's monitor refused the memory state: {exc}") from exc
            finally:
                stream.close()
            self._incoming(domain, name, deadline)
        finally:
            stream.finish()

    def _incoming(self, domain: libvirt.virDomain, name: str, deadline: float) -> None:
        try:
            _monitor(domain, "migrate-incoming", uri="fd:snapshot")
            while True:
                state = _monitor(domain, "query-migrate")
                status = state.get("status")
                if status == "completed":
                    return
                if status in ("failed", "cancelled"):
                    raise DeploymentFailed(str(state.get("error-desc", status)))
                if time.monotonic() >= deadline:
                    raise DeploymentTimeout("the snapshot's memory did not load in time")
                time.sleep(0.01)
        except DeploymentFailed as exc:
            # QEMU exits when a load fails; what it said is in the domain's log.
            said = _qemu_log_tail(self.uri, name) or exc.reason
            raise DeploymentFailed(f"QEMU could not load the snapshot's memory: {said}") from exc

    def _save(self, name: str, snapshot: str, *, pause: bool) -> None:
        """libvirt's external snapshot, without metadata (the domain is transient): a running
        domain is paused while it is saved and runs on; a paused one stays paused."""
        try:
            domain = self._domain(name)
            if pause:
                domain.suspend()
            domain.snapshotCreateXML(snapshot, libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA)
        except libvirt.libvirtError as exc:
            raise DeploymentFailed(f"libvirt could not save the VM {name}: {exc}") from exc

    def _resume(self, name: str) -> None:
        try:
            self._domain(name).resume()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:  # it was not paused
                raise DeploymentFailed(f"libvirt could not resume {name}: {exc}") from exc

    def _capabilities(self) -> str:
        try:
            return str(self._connection().getCapabilities())
        except libvirt.libvirtError as exc:
            raise DeploymentFailed(f"libvirt ({self.uri}) has no capabilities: {exc}") from exc

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
        prefix = self.domain_name("")
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
                unlink(overlay)
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

    def _domain(self, name: str) -> libvirt.virDomain:
        try:
            return self._connection().lookupByName(name)
        except libvirt.libvirtError as exc:
            raise DeploymentFailed(f"libvirt has no domain {name}: {exc}") from exc

    def _connection(self) -> libvirt.virConnect:
        with self._lock:
            if self._conn is not None and self._conn.isAlive():
                return self._conn
            self._conn = _open(self.uri)
            return self._conn


def _qmp(command: str, **arguments: object) -> str:
    return json.dumps({"execute": command, "arguments": arguments})


def _monitor(domain: libvirt.virDomain, command: str, **arguments: object) -> dict[str, Any]:
    """A QMP command on the domain's monitor (libvirt passes it through); its return value."""
    try:
        answer = json.loads(libvirt_qemu.qemuMonitorCommand(domain, _qmp(command, **arguments), 0))
    except (libvirt.libvirtError, ValueError) as exc:
        raise DeploymentFailed(f"QEMU's monitor refused {command}: {exc}") from exc
    returned = answer.get("return", {}) if isinstance(answer, dict) else {}
    return returned if isinstance(returned, dict) else {}


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


def _recorded_overlay(domain: libvirt.virDomain) -> Path | None:
    """The overlay a domain of ours recorded in its metadata (see vm_domain)."""
    try:
        xml = domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, DYN_NS)
        overlay = etree.fromstring(xml.encode()).get("overlay")
    except (libvirt.libvirtError, etree.XMLSyntaxError):
        return None
    path = Path(overlay) if overlay else None
    return path if path is not None and path.name == "overlay.qcow2" else None


def _qemu_log_tail(uri: str, name: str) -> str:
    """The last lines QEMU wrote to its log (libvirtd keeps one per domain), on one line."""
    if not uri.startswith("qemu:///system"):
        return ""
    try:
        text = (Path("/var/log/libvirt/qemu") / f"{name}.log").read_text(errors="replace")
    except OSError:
        return ""
    lines = [line for line in text.splitlines()[-20:] if "qemu-system" in line]
    return " | ".join(line.partition("qemu-system")[2].partition(": ")[2] for line in lines[-3:])


def _remove_qemu_log(uri: str, name: str) -> None:
    """libvirtd keeps a log per domain name; a deployment's is of no use once it is gone."""
    if uri.startswith("qemu:///system"):
        unlink(Path("/var/log/libvirt/qemu") / f"{name}.log")


def _silence_default_handler(_ctx: object, _error: object) -> None:
    """libvirt prints every error to stderr by default; ours are raised, wrapped, instead."""


libvirt.registerErrorHandler(_silence_default_handler, None)
