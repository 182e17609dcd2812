"""The Host Provider's state: what it hosts, its capacity, its image cache, and the deploy /
undeploy steps.

A deployment directory is ``DATA/deployments/ID/`` holding the unpacked package (``pkg/``); a
VM package's images are links into the image cache (``DATA/images``), pinned while the
deployment lives. Its output goes to its log (``DATA/logs/ID``, see :mod:`dynasoar.host.logstore`),
which outlives it. Deploy validates before it runs anything and leaves nothing behind on failure
but the log of a package that was started and failed. A VM deployment starts from a snapshot
when there is one (:mod:`dynasoar.host.snapshotting`), and can be saved, paused, to move it
(:meth:`HostProvider.save_state`) and resumed when it did not move.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from dynasoar import __version__
from dynasoar.errors import (
    Busy,
    DeploymentFailed,
    DynasoarError,
    InvalidPackage,
    InvalidRequest,
    MalformedMessage,
)
from dynasoar.host.backends import Backend
from dynasoar.host.logstore import LogStore, ServiceLog
from dynasoar.host.meter import UsageMeter
from dynasoar.host.placing import deployments_root, place_images
from dynasoar.host.snapshot_store import SnapshotStore
from dynasoar.host.snapshotting import Chosen, Origin, Snapshotting, origin_of
from dynasoar.images import ImageCache, IncomingImage
from dynasoar.package import UnpackLimits, load_manifest, unpack
from dynasoar.snapshots import IncomingSnapshot, Snapshot
from dynasoar.soap.mtom import Attachment
from dynasoar.terms import HostTerms

log = logging.getLogger(__name__)

#: Seconds a Resume or SaveState waits for the other under way on the same deployment.
MOVING_WAIT = 120.0


@dataclass
class Hosted:
    id: str
    service: str
    version: str
    kind: str
    endpoint: str
    started: datetime
    directory: Path
    handle: object
    images: list[str] = field(default_factory=list)  # pinned digests
    owner: str | None = None  # who asked for it (the Deploy's owner)
    state: str = "ready"  # or "starting", while its Deploy is under way; "saved" (paused)
    origin: Origin | None = None  # a VM deployment's package, and the snapshot it came from
    restored: bool = False  # started from a snapshot instead of a boot
    saved: list[str] = field(default_factory=list)  # parts of its own saved state
    #: Held while its state is saved or it is resumed: a Resume that comes while a SaveState
    #: is under way waits for the save, then resumes what it saved (never left paused).
    moving: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


@dataclass(frozen=True)
class DeployRequest:
    service: str
    version: str
    kind: str
    stateless: bool
    sha256: str
    images: tuple[IncomingImage, ...] = ()
    #: the id the requester chose (recorded on its side first); None: the host picks one
    deployment_id: str | None = None
    owner: str | None = None
    #: a VM snapshot to start from (taken elsewhere, or a moving deployment's state)
    snapshot: IncomingSnapshot | None = None


#: Deployment ids: they name directories and VM domains.
DEPLOYMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class HostProvider:
    def __init__(
        self,
        data: Path,
        backends: dict[str, Backend],
        capacity: int,
        images: ImageCache,
        logs: LogStore,
        start_timeout: float = 60.0,
        unpack_limits: UnpackLimits = UnpackLimits(),
        terms: HostTerms = HostTerms(),
        meter: UsageMeter | None = None,
    ) -> None:
        self.data = data
        self.logs = logs
        #: What each deployment consumes (for the bill).
        self.meter = meter or UsageMeter()
        self.meter.start()
        self.terms = terms
        self.backends = backends  # by package kind: "code", "vm"
        self.capacity = capacity
        self.images = images
        self.start_timeout = start_timeout
        self.address = ""
        self._limits = unpack_limits
        self._hosted: dict[str, Hosted] = {}
        #: Deploys under way, by id; those an Undeploy named meanwhile are undone once started.
        self._starting: dict[str, Hosted] = {}
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        # The backends first: one that cannot work here (libvirt unreachable) stops the start
        # before anything is changed on disk.
        self._clear_backend_leftovers()
        self._deployments_dir, self._scratch = deployments_root(data)
        self.snapshots = Snapshotting(SnapshotStore(images, data / "snapshots"), backends.get("vm"))
        self._clear_leftovers()

    @property
    def backend_name(self) -> str:
        vm = self.backends.get("vm")
        return vm.name if vm is not None else self.backends["code"].name

    def _clear_backend_leftovers(self) -> None:
        """What a previous run left in the backends: domains of its VMs."""
        for backend in self.backends.values():
            clear = getattr(backend, "clear_leftovers", None)
            if clear is not None:
                clear()

    def _clear_leftovers(self) -> None:
        """Directories of a previous run's deployments (its code services died with it)."""
        for entry in self._deployments_dir.iterdir():
            shutil.rmtree(entry, ignore_errors=True)

    def deploy(self, request: DeployRequest, package: Attachment) -> Hosted:
        backend = self.backends.get(request.kind)
        if backend is None:
            kinds = " and ".join(sorted(self.backends))
            raise InvalidRequest(f"this host runs {kinds} packages, not {request.kind!r} ones")
        if request.sha256 and request.sha256.lower() != package.sha256:
            raise MalformedMessage(
                f"the package's SHA-256 is {package.sha256}, not {request.sha256} as declared"
            )
        deployment_id = self._reserve(request)
        directory = self._deployments_dir / deployment_id
        pinned: list[str] = []
        received: list[str] = []  # images this Deploy brought into the cache
        output: ServiceLog | None = None
        chosen: Chosen | None = None
        try:
            root = unpack(package.path, directory / "pkg", self._limits)
            names = frozenset(image.name for image in request.images)
            manifest = load_manifest(root, external=names)
            if manifest.name != request.service or manifest.kind != request.kind:
                raise InvalidPackage(
                    f"the package is {manifest.kind} service {manifest.name!r}, not "
                    f"{request.kind} service {request.service!r} as declared"
                )
            pinned, base = place_images(self.images, root, manifest, request.images, received)
            origin = origin_of(manifest, package.sha256, request.images)
            chosen = self.snapshots.choose(origin, request.snapshot, received)
            if chosen is not None:
                pinned += chosen.pinned
            output = self.logs.open(deployment_id, manifest.name, manifest.version, manifest.kind)
            deadline = time.monotonic() + self.start_timeout
            started, restored = self.snapshots.start(
                backend, chosen, deployment_id, root, manifest, deadline, output, base
            )
            if origin is not None and restored and chosen is not None:
                origin = replace(origin, layers=chosen.snapshot.layers)
            elif not restored:
                self.snapshots.after_boot(backend, started.handle, origin)
        except BaseException as exc:
            if output is not None:  # kept: what the package said is why it failed
                reason = exc.reason if isinstance(exc, DynasoarError) else repr(exc)
                self.logs.ended(deployment_id, "failed", reason)
            self._release(deployment_id)
            self.images.unpin(pinned)
            # A refused deployment leaves nothing behind: not even the images it brought.
            self.images.discard(received)
            shutil.rmtree(directory, ignore_errors=True)
            raise
        received_bytes = sum(self.images.path(digest).stat().st_size for digest in received)
        if restored and chosen is not None and chosen.snapshot.kind == "state":
            # A moved guest's memory, loaded: no longer needed here (its layers are).
            memory = chosen.snapshot.memory.sha256
            pinned.remove(memory)
            self.images.unpin([memory])
            self.images.discard([memory])
        hosted = Hosted(
            id=deployment_id,
            service=manifest.name,
            version=manifest.version,
            kind=manifest.kind,
            endpoint=started.endpoint,
            started=datetime.now(UTC),
            directory=directory,
            handle=started.handle,
            images=pinned,
            owner=request.owner,
            origin=origin,
            restored=restored,
        )
        with self._lock:
            self._starting.pop(deployment_id, None)
            self._hosted[deployment_id] = hosted
            cancelled = deployment_id in self._cancelled
            self._cancelled.discard(deployment_id)
        self.logs.running(deployment_id)
        handle = started.handle
        self.meter.track(
            deployment_id,
            manifest.name,
            manifest.version,
            received_bytes,
            lambda: backend.usage(handle),
        )
        if cancelled:
            self.undeploy(deployment_id, grace=1.0, reason="undeployed while it started")
            raise DeploymentFailed(f"deployment {deployment_id} was undeployed while it started")
        self.images.evict()
        log.info(
            "deployed %s %s as %s at %s", hosted.service, hosted.version, hosted.id, hosted.endpoint
        )
        return hosted

    def _reserve(self, request: DeployRequest) -> str:
        """A place for one more deployment, under the id asked for (or a new one)."""
        deployment_id = request.deployment_id or uuid.uuid4().hex
        if not DEPLOYMENT_ID.match(deployment_id):
            raise InvalidRequest(
                f"deploymentId {deployment_id[:80]!r}: use letters, digits, '_' and '-' (max 64)"
            )
        with self._lock:
            if deployment_id in self._hosted or deployment_id in self._starting:
                raise InvalidRequest(f"a deployment {deployment_id} exists here already")
            if len(self._hosted) + len(self._starting) >= self.capacity:
                raise Busy(f"this host is at capacity ({self.capacity} deployments)")
            self._starting[deployment_id] = Hosted(
                id=deployment_id,
                service=request.service,
                version=request.version,
                kind=request.kind,
                endpoint="",
                started=datetime.now(UTC),
                directory=self._deployments_dir / deployment_id,
                handle=None,
                owner=request.owner,
                state="starting",
            )
        return deployment_id

    def _release(self, deployment_id: str) -> None:
        with self._lock:
            self._starting.pop(deployment_id, None)
            self._cancelled.discard(deployment_id)

    def undeploy(
        self, deployment_id: str, grace: float = 5.0, ended: str = "undeployed", reason: str = ""
    ) -> bool:
        """Stop a deployment; its log is kept as ``ended`` (with ``reason``). One still
        starting is undone as soon as it has started."""
        with self._lock:
            hosted = self._hosted.pop(deployment_id, None)
            if hosted is None and deployment_id in self._starting:
                self._cancelled.add(deployment_id)
                log.info("undeploy of %s, still starting: undone once started", deployment_id)
                return True
        if hosted is None:
            return False
        self.meter.end(deployment_id)
        if self.backends[hosted.kind].stop(hosted.handle, grace) and ended == "undeployed":
            ended, reason = "exited", "it had stopped by itself"  # before it was undeployed
        self.logs.ended(deployment_id, ended, reason)
        shutil.rmtree(hosted.directory, ignore_errors=True)
        self.images.unpin(hosted.images)
        self.images.discard(hosted.saved)  # its saved state: moved elsewhere, or abandoned
        self.images.evict()
        log.info("undeployed %s (%s)", hosted.id, hosted.service)
        return True

    def save_state(self, deployment_id: str) -> Snapshot:
        """Pause a VM deployment and save its state (to move it); it stays paused until
        :meth:`resume` or :meth:`undeploy`. Saved already: the same state again."""
        hosted = self._find(deployment_id)
        if hosted.origin is None:
            raise InvalidRequest(
                f"{hosted.service} is a code service: only a VM guest's state can be saved"
            )
        with _holding(hosted):
            if hosted.saved:
                snapshot = self.snapshots.store.get(hosted.saved[0])
                if snapshot is not None:
                    return snapshot
            snapshot = self.snapshots.save_state(
                self.backends[hosted.kind], hosted.handle, hosted.origin
            )
            pinned = self.snapshots.store.acquire(snapshot) or []
            hosted.images += pinned
            hosted.saved = [snapshot.digest, snapshot.memory.sha256, snapshot.layers[-1].sha256]
            hosted.state = "saved"
        log.info("saved %s (%s) to move it: paused", hosted.id, hosted.service)
        return snapshot

    def resume(self, deployment_id: str) -> bool:
        """A saved deployment runs again (its move did not happen); False if it was not saved.
        A save under way is waited for (the guest is paused already: it is resumed after)."""
        hosted = self._find(deployment_id)
        with _holding(hosted):
            if hosted.state != "saved":
                return False
            resume = getattr(self.backends[hosted.kind], "resume", None)
            if resume is not None:
                resume(hosted.handle)
            hosted.state = "ready"
        log.info("resumed %s (%s): it was not moved", hosted.id, hosted.service)
        return True

    def _find(self, deployment_id: str) -> Hosted:
        with self._lock:
            hosted = self._hosted.get(deployment_id)
        if hosted is None:
            raise InvalidRequest(f"no deployment {deployment_id[:80]!r} runs here")
        return hosted

    def starting(self) -> list[Hosted]:
        with self._lock:
            return [h for h in self._starting.values() if h.id not in self._cancelled]

    def hosted(self) -> list[Hosted]:
        with self._lock:
            items = list(self._hosted.values())
        return [h for h in items if self._check_alive(h)]

    def _check_alive(self, hosted: Hosted) -> bool:
        if self.backends[hosted.kind].alive(hosted.handle):
            return True
        log.warning("deployment %s (%s) died; dropping it", hosted.id, hosted.service)
        self.undeploy(hosted.id, grace=0.1, ended="exited", reason="it stopped by itself")
        return False

    @property
    def load(self) -> float:
        return os.getloadavg()[0]

    def status(self) -> dict[str, object]:
        return {
            "address": self.address,
            "backend": self.backend_name,
            "capacity": self.capacity,
            "deployments": len(self.hosted()),
            "load": self.load,
            "version": __version__,
            "cache": self.images.stats(),
            "terms": self.terms,
            "snapshots": self.snapshots.store.stats(),
        }

    def shutdown(self, grace: float = 5.0) -> None:
        with self._lock:
            self._cancelled.update(self._starting)  # undone as soon as they have started
        for deployment_id in list(self._hosted):
            self.undeploy(deployment_id, grace, reason="the host shut down")
        self.meter.close()
        self.snapshots.close()
        for backend in self.backends.values():
            close = getattr(backend, "close", None)
            if close is not None:
                close()
        if self._scratch:
            shutil.rmtree(self._deployments_dir, ignore_errors=True)


@contextmanager
def _holding(hosted: Hosted) -> Iterator[None]:
    """A deployment's save or resume, one at a time, waiting at most MOVING_WAIT seconds."""
    if not hosted.moving.acquire(timeout=MOVING_WAIT):
        raise Busy(
            f"{hosted.service}'s deployment {hosted.id} has been saving or resuming for "
            f"{MOVING_WAIT:.0f} s; retry shortly"
        )
    try:
        yield
    finally:
        hosted.moving.release()
