"""What a VM backend does with a guest, whatever drives the hypervisor: boot it (choosing the
accelerator, probing KVM under ``--accel auto``), restore a copy of a saved guest instead,
save a running one, resume it, stop it. The hypervisor's own calls are the subclass's
(:class:`dynasoar.host.backends.libvirt.LibvirtBackend`, the only module importing libvirt).

A deployment's directory holds its disk's top (``overlay.qcow2``, and ``overlay-N.qcow2`` above
it once it was saved N times), the memory files of its saves (``memory-N.save``) until the
Host Provider took them, and its console FIFOs; stopping it removes them.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Literal

from lxml import etree

from dynasoar.errors import DeploymentFailed, DynasoarError
from dynasoar.host.backends import Started
from dynasoar.host.backends.kvm_probe import KvmVerdicts, probe_boot
from dynasoar.host.backends.vm_domain import Accel, default_template, render
from dynasoar.host.backends.vm_layout import (
    ID,
    Boot,
    VmDeployment,
    domain_name,
    domain_spec,
    prepare,
)
from dynasoar.host.backends.vm_ready import console_text, free_port, unlink, wait_ready
from dynasoar.host.backends.vm_save import (
    Capture,
    Restore,
    canonical_machine,
    cpu_of,
    machine_of,
    snapshot_xml,
)
from dynasoar.host.logstore import ServiceLog
from dynasoar.package import Manifest
from dynasoar.snapshots import Platform

log = logging.getLogger(__name__)

AccelOption = Literal["tcg", "kvm", "auto"]
ACCEL_NOTES: dict[Accel, str] = {
    "tcg": "under TCG (emulation)",
    "kvm": "under KVM (a paravirtual /dev/kvm hangs stock kernels: try --accel tcg)",
}
#: init_on_free=1: the guest's kernel zeroes the memory it frees, so a snapshot (QEMU skips zero
#: pages) holds only what is in use: vm-echo's shrinks from 75 to 57 MB and loads 4x faster.
DEFAULT_CMDLINE = "console=ttyS0 quiet panic=-1 init_on_free=1"
#: a KVM probe boot that has not served by then counts as failed (TCG boots in ~5 s here)
KVM_PROBE_SECONDS = 15.0
PORT_ATTEMPTS = 3


class PortTaken(Exception):
    """Another process took the forwarded port between our look and QEMU's bind."""


class VmBackend:
    name = "libvirt"

    def __init__(
        self,
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
        if not ID.match(scope):
            raise ValueError(f"scope must be letters, digits and '-', not {scope!r}")
        self.accel = accel
        self.scope = scope
        self._base_images = base_images
        self._cmdline = kernel_cmdline
        self._template = template or default_template()
        self._kvm = kvm_verdicts or KvmVerdicts()
        self._kvm_probe_seconds = kvm_probe_seconds
        self._listen = listen  # where guests' ports are forwarded from
        self._platforms: dict[Accel, Platform] = {}  # the template and QEMU do not change

    # -- the hypervisor's part ------------------------------------------------------------------

    def _create_domain(self, xml: str, *, paused: bool) -> None:
        """Start a domain that goes when this backend's connection does; raises PortTaken."""
        raise NotImplementedError

    def _remove_domain(self, name: str) -> None:
        """Destroy and forget a domain; one already gone is fine."""
        raise NotImplementedError

    def _load(self, name: str, memory: Path, deadline: float) -> None:
        """Load a saved memory stream into a domain created paused to receive it."""
        raise NotImplementedError

    def _save(self, name: str, snapshot: str, *, pause: bool) -> None:
        """Save a running domain as the snapshot document says (memory and disk)."""
        raise NotImplementedError

    def _resume(self, name: str) -> None:
        raise NotImplementedError

    def _capabilities(self) -> str:
        """The hypervisor's capabilities document (its machine types)."""
        raise NotImplementedError

    def alive(self, handle: object) -> bool:
        raise NotImplementedError

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
        boot = self._prepare(deployment_id, root, manifest, output, base_image)
        try:
            running = self._boot(boot, deadline)
        except BaseException:
            unlink(boot.chain[0])
            raise
        log.info("VM %s serving at %s (%s)", running.domain, running.endpoint, running.accel)
        return Started(endpoint=running.endpoint, handle=running)

    def stop(self, handle: object, grace: float) -> bool:
        """Destroy (QEMU is killed: the overlay is about to be deleted, so there is nothing to
        flush) and undefine the domain, then delete its disk's layers. ``grace`` is not
        needed. Returns whether the guest had stopped by itself."""
        assert isinstance(handle, VmDeployment)
        by_itself = not self.alive(handle)
        self._remove_domain(handle.domain)
        directory = handle.overlay.parent
        for path in (*directory.glob("overlay*.qcow2"), *directory.glob("memory-*.save")):
            unlink(path)
        return by_itself

    def domain_name(self, deployment_id: str) -> str:
        return domain_name(self.scope, deployment_id)

    # -- snapshots ------------------------------------------------------------------------------

    def restore(
        self,
        deployment_id: str,
        root: Path,
        manifest: Manifest,
        deadline: float,
        state: Restore,
        *,
        output: ServiceLog,
        base_image: Path | None = None,
    ) -> Started:
        """Start a copy of a saved guest instead of booting: its own overlay on the saved
        layers, its own port and VM generation ID, the memory state loaded, then resumed and
        probed. Raises (leaving no domain and no overlay) when the snapshot does not load; the
        caller may boot instead."""
        began = time.monotonic()
        boot = self._prepare(deployment_id, root, manifest, output, base_image, state.layers)
        try:
            running = self._create(boot, "kvm" if state.platform.accel == "kvm" else "tcg", state)
            try:
                self._load(running.domain, state.memory, deadline)
                loaded = time.monotonic()
                self._resume(running.domain)
                wait_ready(
                    running.endpoint,
                    deadline,
                    alive=lambda: self.alive(running),
                    describe=lambda: "restored; guest console: " + console_text(output),
                )
            except BaseException:
                self._remove_quietly(running.domain)
                raise
        except BaseException:
            unlink(boot.chain[0])
            raise
        log.info(
            "VM %s restored at %s in %.2f s (memory loaded after %.2f s)",
            running.domain,
            running.endpoint,
            time.monotonic() - began,
            loaded - began,
        )
        return Started(endpoint=running.endpoint, handle=running)

    def capture(self, handle: object, *, pause: bool) -> Capture:
        """Save a running guest: its memory to a file beside its disk, and its disk's top
        frozen under a new, empty top that takes its writes from now on. With ``pause`` the
        guest stays paused afterwards (until :meth:`resume` or :meth:`stop`: a move); without,
        it is paused only while it is saved (~0.2 s)."""
        assert isinstance(handle, VmDeployment)
        directory = handle.overlay.parent
        number = handle.saves + 1
        memory, top = directory / f"memory-{number}.save", directory / f"overlay-{number}.qcow2"
        try:
            self._save(handle.domain, snapshot_xml(memory, top), pause=pause)
        except BaseException:
            unlink(memory)
            unlink(top)
            if pause:  # not saved: it runs on as it was
                self._resume(handle.domain)
            raise
        handle.saves = number
        frozen, handle.overlay = handle.overlay, top
        return Capture(memory, frozen, self.platform(handle.accel))

    def resume(self, handle: object) -> None:
        """Let a guest paused by ``capture(pause=True)`` run again."""
        assert isinstance(handle, VmDeployment)
        self._resume(handle.domain)

    def platform(self, accel: Accel | None = None) -> Platform:
        """What a snapshot taken here records, and what one restored here must have been
        taken on: the template's machine type (as this host's QEMU names it), its CPU model,
        and the accelerator."""
        if accel is None:
            accel = self.accel if self.accel != "auto" else ("kvm" if self._kvm.get() else "tcg")
        known = self._platforms.get(accel)
        if known is None:
            known = self._platforms[accel] = self._platform(accel)
        return known

    def _platform(self, accel: Accel) -> Platform:
        try:
            template = etree.parse(str(self._template)).getroot()
        except (OSError, etree.XMLSyntaxError) as exc:
            raise DeploymentFailed(
                f"the domain template {self._template} is unusable: {exc}"
            ) from exc
        machine = canonical_machine(self._capabilities(), machine_of(template))
        # Under KVM the template's <cpu> goes (see vm_domain): the hypervisor's default.
        return Platform(machine, "default" if accel == "kvm" else cpu_of(template), accel)

    # -- steps ---------------------------------------------------------------------------------

    def _prepare(
        self,
        deployment_id: str,
        root: Path,
        manifest: Manifest,
        output: ServiceLog,
        base_image: Path | None,
        layers: tuple[Path, ...] = (),
    ) -> Boot:
        return prepare(
            self.scope, deployment_id, root, manifest, output, base_image, layers, self._base_images
        )

    def _boot(self, boot: Boot, deadline: float) -> VmDeployment:
        if self.accel != "auto":
            return self._boot_ready(boot, self.accel, deadline)
        return probe_boot(
            self._kvm,
            lambda accel, until: self._boot_ready(boot, accel, until),
            deadline,
            self._kvm_probe_seconds,
        )

    def _boot_ready(self, boot: Boot, accel: Accel, deadline: float) -> VmDeployment:
        """Create the domain and wait for its endpoint; on any failure remove the domain."""
        running = self._create(boot, accel)
        try:
            wait_ready(
                running.endpoint,
                deadline,
                alive=lambda: self.alive(running),
                describe=lambda: (
                    f"{ACCEL_NOTES[accel]}; guest console: " + console_text(boot.output)
                ),
            )
        except BaseException:
            self._remove_quietly(running.domain)
            raise
        return running

    def _create(self, boot: Boot, accel: Accel, restore: Restore | None = None) -> VmDeployment:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port(self._listen)
            spec = domain_spec(
                boot, accel, port, scope=self.scope, cmdline=self._cmdline, listen=self._listen
            )
            if restore is not None:  # paused, waiting for its memory (see vm_save)
                spec = replace(
                    spec, machine=restore.platform.machine, genid=str(uuid.uuid4()), incoming=True
                )
            try:
                self._create_domain(render(spec, self._template), paused=restore is not None)
            except PortTaken as exc:
                if attempt < PORT_ATTEMPTS:
                    continue
                raise DeploymentFailed(
                    f"the VM could not start {ACCEL_NOTES[accel]}: its port was taken: {exc}"
                ) from exc
            endpoint = f"http://{self._listen}:{port}{boot.vm.path}"
            return VmDeployment(boot.name, boot.chain[0], boot.console, endpoint, accel)
        raise AssertionError("unreachable")

    def _remove_quietly(self, name: str) -> None:
        """Cleanup on a failure path: the failure is what the caller needs to hear."""
        try:
            self._remove_domain(name)
        except DynasoarError as exc:
            log.error("could not remove the failed VM %s: %s", name, exc.reason)
