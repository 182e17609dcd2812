"""VM deployments and snapshots on a Host Provider: which snapshot a deployment starts from (one
the Deploy named and sent, or the host's own of that package), restoring it or booting instead,
taking a package's snapshot after its first boot, and saving a deployment's state to move it.

- **Snapshot start.** The first boot of a package on this host is saved just after the guest
  answered its readiness probe and before the Deploy returns (no message has reached the guest:
  the snapshot is the package's initial state; the guest is paused ~0.2 s for it). Taking the
  saved memory into the cache (the stream cut out of libvirt's file, hashed) runs afterwards on
  a thread of its own. A later deploy of the same package (same images) restores a copy
  instead of booting; a restore that fails is logged, counted, and the guest boots.
  A manifest with ``[vm] snapshot = false`` is never saved, nor started from a snapshot.
- **A snapshot sent with a Deploy** (taken elsewhere) must be of that package, with its memory
  size and vCPUs, and taken on this host's platform (machine type, CPU model, accelerator):
  else the Deploy is refused with dyn:SnapshotIncompatible. Its parts are checked against their
  digests as they enter the cache.
- **A state** (a move): the guest is paused and saved, its memory and the disk layer it wrote
  kept by digest, pinned while the deployment lives; it stays paused until resumed (the move
  failed) or undeployed. A Deploy naming a state restores it or fails: never a boot.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from dynasoar.errors import (
    DeploymentFailed,
    DynasoarError,
    ImageNotHeld,
    InvalidPackage,
    InvalidRequest,
    SnapshotIncompatible,
)
from dynasoar.host.backends import Backend, Started
from dynasoar.host.backends.vm_backend import VmBackend
from dynasoar.host.backends.vm_save import Capture, Restore, extract_stream, is_stream
from dynasoar.host.logstore import ServiceLog
from dynasoar.host.snapshot_store import SnapshotStore
from dynasoar.images import ImageRef, IncomingImage
from dynasoar.package import Manifest
from dynasoar.qcow2 import is_qcow2
from dynasoar.snapshots import IncomingSnapshot, Snapshot, package_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Origin:
    """What a VM deployment was started from: enough to describe a snapshot of it."""

    service: str
    version: str
    package: str
    images: tuple[tuple[str, str], ...]
    memory_mib: int
    vcpus: int
    snapshot: bool  # its manifest lets it be snapshotted
    layers: tuple[ImageRef, ...] = ()  # the snapshot layers its disk sits on

    @property
    def key(self) -> str:
        return package_key(self.package, self.images)


@dataclass
class Chosen:
    """The snapshot a deployment is to start from, its parts pinned."""

    snapshot: Snapshot
    restore: Restore
    required: bool
    pinned: list[str] = field(default_factory=list)


def origin_of(manifest: Manifest, package: str, images: Sequence[IncomingImage]) -> Origin | None:
    vm = manifest.vm
    if vm is None:
        return None
    return Origin(
        manifest.name,
        manifest.version,
        package.lower(),
        tuple(sorted((i.name, i.sha256.lower()) for i in images)),
        vm.memory_mib,
        vm.vcpus,
        vm.snapshot,
    )


class Snapshotting:
    def __init__(self, store: SnapshotStore, backend: Backend | None) -> None:
        self.store = store
        self._backend = backend if isinstance(backend, VmBackend) else None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hp-snapshots")
        self._taking: set[str] = set()  # package keys whose snapshot is being kept
        self._lock = threading.Lock()

    # -- which snapshot a deployment starts from ------------------------------------------------

    def choose(
        self, origin: Origin | None, incoming: IncomingSnapshot | None, received: list[str]
    ) -> Chosen | None:
        """The snapshot to restore (pinned), or None: boot. ``received`` gets the digests of
        parts this Deploy brought into the cache (a refused Deploy discards them)."""
        backend = self._backend
        if incoming is not None:
            if origin is None or backend is None:
                raise InvalidRequest("a snapshot goes with a VM package to a host that runs VMs")
            return self._take_in(backend, origin, incoming, received)
        if origin is None or backend is None or not origin.snapshot:
            return None
        snapshot = self.store.find(origin.key)
        if snapshot is None or _mismatch(snapshot, origin, backend) is not None:
            return None
        pinned = self.store.acquire(snapshot)
        if pinned is None:
            return None
        return Chosen(snapshot, self._restore_of(snapshot), False, pinned)

    def _take_in(
        self, backend: VmBackend, origin: Origin, incoming: IncomingSnapshot, received: list[str]
    ) -> Chosen:
        snapshot = incoming.snapshot
        if snapshot.kind == "image" and not origin.snapshot:
            raise InvalidRequest(
                f"{origin.service}'s manifest says [vm] snapshot = false: it is never started "
                "from a snapshot"
            )
        problem = _mismatch(snapshot, origin, backend)
        if problem is not None:
            raise problem
        chosen = Chosen(snapshot, self._restore_of(snapshot), incoming.required)
        sent = {part.sha256: part for part in incoming.parts}
        try:
            for ref in snapshot.parts:
                part = sent.get(ref.sha256)
                if part is not None and part.attachment is not None:
                    _check_part(ref, part, snapshot)
                acquired = self.store.cache.acquire(ref.sha256, part.attachment if part else None)
                if acquired is None:
                    raise ImageNotHeld(
                        f"the snapshot's {ref.name} (sha256:{ref.sha256}) is not in this "
                        "host's cache; send its content"
                    )
                chosen.pinned.append(ref.sha256)
                if acquired[1]:
                    received.append(ref.sha256)
            self.store.add(snapshot)
            if self.store.cache.acquire(snapshot.digest, None) is not None:
                chosen.pinned.append(snapshot.digest)
        except BaseException:
            self.store.cache.unpin(chosen.pinned)
            raise
        return chosen

    def _restore_of(self, snapshot: Snapshot) -> Restore:
        memory, layers = self.store.paths(snapshot)
        return Restore(memory, layers, snapshot.platform)

    # -- starting -------------------------------------------------------------------------------

    def start(
        self,
        backend: Backend,
        chosen: Chosen | None,
        deployment_id: str,
        root: Path,
        manifest: Manifest,
        deadline: float,
        output: ServiceLog,
        base_image: Path | None,
    ) -> tuple[Started, bool]:
        """Restore the chosen snapshot, else (or when that fails and a boot may do) boot.
        Returns what started and whether it was restored."""
        if chosen is not None and isinstance(backend, VmBackend):
            try:
                started = backend.restore(
                    deployment_id, root, manifest, deadline, chosen.restore,
                    output=output, base_image=base_image,
                )  # fmt: skip
            except DynasoarError as exc:
                if chosen.required:
                    raise
                self.store.count("fallbacks")
                self.store.forget(chosen.snapshot)  # this boot takes a new one
                log.warning(
                    "%s: restoring snapshot %s failed (%s); booting instead",
                    deployment_id,
                    chosen.snapshot.digest[:12],
                    exc.reason.splitlines()[0],
                )
            else:
                self.store.count("restored")
                return started, True
        started = backend.start(
            deployment_id, root, manifest, deadline, output=output, base_image=base_image
        )
        return started, False

    def after_boot(self, backend: Backend, handle: object, origin: Origin | None) -> None:
        """A package's first boot here: save the guest now (before any message reaches it),
        keep the snapshot in the cache in the background."""
        if origin is None or not origin.snapshot or not isinstance(backend, VmBackend):
            return
        key = origin.key
        with self._lock:
            if key in self._taking or self.store.find(key) is not None:
                return
            self._taking.add(key)
        try:
            capture = backend.capture(handle, pause=False)
            staged = self._stage(capture)
        except BaseException as exc:
            with self._lock:
                self._taking.discard(key)
            reason = exc.reason if isinstance(exc, DynasoarError) else repr(exc)
            log.warning("no snapshot of %s %s: %s", origin.service, origin.version, reason)
            return
        self._worker.submit(self._keep, origin, staged, capture)

    def _stage(self, capture: Capture) -> tuple[Path, Path]:
        """The saved memory moved, and the frozen layer copied (the guest reads it still), out
        of the deployment's directory: it may be undeployed before they are kept."""
        memory, layer = (
            _staging(self.store.cache.root, ".save"),
            _staging(self.store.cache.root, ".layer"),
        )
        shutil.move(capture.memory, memory)
        shutil.copyfile(capture.layer, layer)
        return memory, layer

    def _keep(self, origin: Origin, staged: tuple[Path, Path], capture: Capture) -> None:
        try:
            snapshot = self._describe("image", origin, staged, capture)
            self.store.add(snapshot)
            self.store.count("taken")
            log.info(
                "snapshot %s of %s %s kept (%d bytes)",
                snapshot.digest[:12],
                origin.service,
                origin.version,
                snapshot.size,
            )
        except (DynasoarError, OSError) as exc:
            log.warning("the snapshot of %s was not kept: %s", origin.service, exc)
        finally:
            for path in staged:
                path.unlink(missing_ok=True)
            with self._lock:
                self._taking.discard(origin.key)

    def _describe(
        self, kind: str, origin: Origin, staged: tuple[Path, Path], capture: Capture
    ) -> Snapshot:
        save_file, layer_file = staged
        stream = save_file.with_name(save_file.name.replace(".save.", ".stream."))
        try:
            extract_stream(save_file, stream)
            memory = self.store.keep(stream, "memory")
        finally:
            stream.unlink(missing_ok=True)
        layer = self.store.keep(layer_file, f"layer{len(origin.layers)}")
        return Snapshot(
            kind=kind,
            service=origin.service,
            version=origin.version,
            package=origin.package,
            images=origin.images,
            platform=capture.platform,
            memory_mib=origin.memory_mib,
            vcpus=origin.vcpus,
            memory=memory,
            layers=(*origin.layers, layer),
            taken=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    # -- moving ---------------------------------------------------------------------------------

    def save_state(self, backend: Backend, handle: object, origin: Origin) -> Snapshot:
        """Pause the guest and save it for a move: its memory and the layer it wrote, kept by
        digest (the caller pins them). It stays paused."""
        if not isinstance(backend, VmBackend):
            raise InvalidRequest("only VM deployments can be saved; a code service's state can't")
        capture = backend.capture(handle, pause=True)
        try:
            staged = self._stage(capture)
            snapshot = self._describe("state", origin, staged, capture)
            self.store.add(snapshot)
        except OSError as exc:
            raise DeploymentFailed(f"the saved guest could not be kept: {exc}") from exc
        finally:
            capture.memory.unlink(missing_ok=True)
        return snapshot

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)


def _staging(root: Path, kind: str) -> Path:
    """A new file in the cache's directory, removed at the next start if left (".partial")."""
    fd, name = tempfile.mkstemp(prefix="stage-", suffix=f"{kind}.partial", dir=root)
    os.close(fd)
    return Path(name)


def _mismatch(snapshot: Snapshot, origin: Origin, backend: VmBackend) -> DynasoarError | None:
    """Why this snapshot cannot start this deployment here, if it cannot."""
    if snapshot.key != origin.key:
        return InvalidRequest(
            f"the snapshot is of {snapshot.service} {snapshot.version} with other images, not of "
            "this package"
        )
    if (snapshot.memory_mib, snapshot.vcpus) != (origin.memory_mib, origin.vcpus):
        return InvalidRequest(
            f"the snapshot's guest had {snapshot.memory_mib} MiB and {snapshot.vcpus} vCPUs; "
            f"the manifest says {origin.memory_mib} MiB and {origin.vcpus}"
        )
    ours = backend.platform()
    if snapshot.platform != ours:
        return SnapshotIncompatible(
            f"the snapshot was taken with {snapshot.platform}; this host runs {ours}: a guest's "
            "memory restores only on the same machine type, CPU model and accelerator. Deploy "
            "without the snapshot (the guest boots)"
        )
    return None


def _check_part(ref: ImageRef, part: IncomingImage, snapshot: Snapshot) -> None:
    """A part's content (its digest checked already), before it enters the cache: what it
    must look like."""
    assert part.attachment is not None
    check = is_stream if ref is snapshot.memory else is_qcow2
    if not check(part.attachment.path):
        raise InvalidPackage(f"the snapshot's {ref.name} is not what it says it is")
