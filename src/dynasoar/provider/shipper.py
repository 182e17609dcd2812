"""Shipping a service to one Host Provider: record the deployment as "deploying" under an id
chosen here (so that a crash leaves a trace to find it again by), send Deploy with the package
and the images the host lacks (an image this SP lacks too is fetched first from another SP
sharing the registry: :mod:`.image_peers`), probe the new endpoint, record it "ready". A failed
shipment leaves nothing behind, on either side; undoing on the host runs in the background, so
that a host that hangs holds no consumer up."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path

from dynasoar.consumer.host_client import (
    HostClient,
    PackageShipment,
    ShippedImage,
    ShippedSnapshot,
)
from dynasoar.errors import (
    Busy,
    DeploymentFailed,
    DynasoarError,
    ImageNotHeld,
    ImageUnavailable,
    InvalidPackage,
    InvalidRequest,
    SnapshotIncompatible,
)
from dynasoar.http import ConnectionPool
from dynasoar.images import ImageCache, ImageRef
from dynasoar.provider.activity import ShipObserver, Unobserved
from dynasoar.provider.registry import DeploymentRecord, Registry, ServiceRecord, now
from dynasoar.provider.snapshots import SnapshotLibrary, key_of
from dynasoar.snapshots import Snapshot

log = logging.getLogger(__name__)

#: Refusals: the host did nothing, so there is nothing to undo there (nor was it asked
#: anything, when this SP could not fetch an image it lacks).
REFUSALS = (Busy, InvalidRequest, InvalidPackage, ImageUnavailable)
#: Brings images this SP lacks into its repository (from peers), or raises ImageUnavailable;
#: the second argument names the package, for the fault.
Fetch = Callable[[Sequence[ImageRef], str], Awaitable[None]]


class Shipper:
    def __init__(
        self,
        registry: Registry,
        client: HostClient,
        pool: ConnectionPool,
        images: ImageCache,
        deploy_timeout: float,
        packages: Callable[[ServiceRecord], Path] | None = None,
        snapshots: SnapshotLibrary | None = None,
        fetch: Fetch | None = None,
    ) -> None:
        self._registry = registry
        self._fetch = fetch
        #: VM snapshots, shipped to hosts that have none of a package (they restore instead
        #: of booting), learnt from the hosts that take them.
        self.snapshots = snapshots
        self._client = client
        self._pool = pool
        self._images = images
        #: Where a version's archive is on this SP's disk (fetched from a shared registry).
        self._packages = packages or (lambda record: Path(record.package))
        self.deploy_timeout = deploy_timeout
        #: Who asks (told to hosts with every Deploy): this SP's registry's identity.
        self.owner = registry.identity()
        #: Ids of shipments under way in this process (their "deploying" records are no leftovers).
        self.in_progress: set[str] = set()
        self._background: set[asyncio.Task[bool]] = set()
        #: Told of every deployment made or failed, bytes shipped, undeploys (metrics, page).
        self.observer: ShipObserver = Unobserved()
        #: Told (host, +1 or -1) of each deployment a host took or gave up here: the figures
        #: kept of that host count it before its next heartbeat says so.
        self.on_count: Callable[[str, int], None] = lambda host, delta: None

    async def ship(
        self,
        host: str,
        service: ServiceRecord,
        consumer: str | None = None,
        state: ShippedSnapshot | None = None,
        admit: Callable[[], bool] | None = None,
    ) -> DeploymentRecord:
        """``state``: a moving guest's saved state, restored there (or the ship fails).
        ``admit``, asked once the deployment answers and before it is recorded ready (when
        every SP may send it messages): False undeploys it and fails the ship (a move that
        is no longer its mover's must not have its copy serve beside the guest kept)."""
        started = time.monotonic()
        record = DeploymentRecord(
            id=uuid.uuid4().hex,
            service=service.name,
            version=service.version,
            host=host,
            endpoint="",
            state="deploying",
            created=now(),
            deployed_for=consumer,
            changed=now(),
            sha256=service.sha256,
            deployer=self._registry.instance,
        )
        self._registry.add_deployment(record)
        self._registry.note_service_host(service.name, host)  # its log stays there, failed or not
        self.in_progress.add(record.id)
        try:
            endpoint = await self._deploy(host, service, record.id, state)
            await self.probe(endpoint, timeout=max(1.0, self.deploy_timeout / 4))
        except asyncio.CancelledError:
            # This process is stopping: the "deploying" record stays, for the next start (or
            # the reconciliation) to clean up after.
            raise
        except BaseException as exc:
            self._registry.remove_deployment(record.id)
            if not isinstance(exc, REFUSALS):
                self.undeploy_later(host, record.id)
            self.observer.deploy_failed(service, host, exc, time.monotonic() - started)
            raise
        finally:
            self.in_progress.discard(record.id)
        if admit is not None and not admit():
            self._registry.remove_deployment(record.id)
            self.undeploy_later(host, record.id)
            raise DeploymentFailed(
                f"{service.name} was deployed on {host} and undeployed again: what it was "
                "deployed for no longer holds"
            )
        ready = replace(record, endpoint=endpoint, state="ready", changed=now())
        self._registry.add_deployment(ready)
        self.on_count(host, 1)
        self.observer.deployed(ready, time.monotonic() - started)
        log.info(
            "deployed %s on %s in %.2f s: %s",
            service.name,
            host,
            time.monotonic() - started,
            endpoint,
        )
        return ready

    async def _deploy(
        self,
        host: str,
        service: ServiceRecord,
        deployment_id: str,
        state: ShippedSnapshot | None = None,
    ) -> str:
        held, snapshot = await self._held_by(host, service, state is None)
        log.debug(
            "shipping %s %s to %s: %d image(s) held there, %d sent%s",
            service.name,
            service.version,
            host,
            len(set(held) & {i.sha256 for i in service.images}),
            len([i for i in service.images if i.sha256 not in held]),
            ", with a snapshot" if snapshot is not None or state is not None else "",
        )
        try:
            return await self._send(host, service, deployment_id, held, snapshot, state)
        except ImageNotHeld:
            # The host evicted an image between our question and the Deploy: send them all.
            return await self._send(host, service, deployment_id, set(), snapshot, state)
        except SnapshotIncompatible as exc:
            log.info("%s cannot restore %s's snapshot (%s): it boots", host, service.name, exc)
            return await self._send(host, service, deployment_id, held, None)

    async def _send(
        self,
        host: str,
        service: ServiceRecord,
        deployment_id: str,
        held: set[str],
        snapshot: Snapshot | None,
        state: ShippedSnapshot | None = None,
    ) -> str:
        await self._have_images(service, held)
        shipment = self._shipment(service, held, snapshot)
        if state is not None:
            shipment = replace(shipment, snapshot=state)
        _, endpoint = await self._client.deploy(
            host,
            shipment,
            self.deploy_timeout,
            deployment_id=deployment_id,
            owner=self.owner,
        )
        # Images and the snapshot's parts: what travelled, and what the host's cache saved.
        parts = [*service.images, *(snapshot.parts if snapshot is not None else ())]
        saved = sum(part.size for part in parts if part.sha256 in held)
        image_bytes = sum(part.size for part in parts) - saved
        self.observer.shipped(service.size, image_bytes, saved)
        if self.snapshots is not None and state is None:
            self.snapshots.learn_later(host, service)
        return endpoint

    async def _held_by(
        self, host: str, service: ServiceRecord, snapshots: bool = True
    ) -> tuple[set[str], Snapshot | None]:
        """The service's images (and its snapshot's parts) the host already holds: those
        travel without content; and the snapshot to ship, if the SP has one and the host has
        none of its own of that package."""
        if not service.images:
            return set(), None
        ours = self.snapshots.of(service) if self.snapshots is not None and snapshots else None
        digests = [image.sha256 for image in service.images]
        digests += [part.sha256 for part in ours.parts] if ours is not None else []
        held, listed = await self._client.query_cache(host, digests, timeout=30.0)
        if any(s.key == key_of(service) and s.kind == "image" for s in listed):
            ours = None  # the host restores its own
        return held, ours

    async def _have_images(self, service: ServiceRecord, held: set[str]) -> None:
        """The images the host lacks are in this SP's repository: fetched from another SP
        sharing the registry if this one lacks them (published there, not here)."""
        lacking = [
            ref
            for ref in service.images
            if ref.sha256 not in held and not self._images.holds(ref.sha256)
        ]
        if not lacking:
            return
        what = f"{service.name} {service.version}"
        if self._fetch is None:
            raise ImageUnavailable(
                f"{what}'s image {lacking[0].name!r} (sha256:{lacking[0].sha256}) is not in "
                "this Service Provider's repository: publish the package again"
            )
        await self._fetch(lacking, what)

    def _shipment(
        self, service: ServiceRecord, held: set[str], snapshot: Snapshot | None = None
    ) -> PackageShipment:
        images = tuple(
            ShippedImage(ref, None if ref.sha256 in held else self._images.path(ref.sha256))
            for ref in service.images
        )
        shipped = None
        if snapshot is not None:
            shipped = ShippedSnapshot(
                snapshot,
                {
                    p.sha256: self._images.path(p.sha256)
                    for p in snapshot.parts
                    if p.sha256 not in held
                },
            )
        return PackageShipment(
            service=service.name,
            version=service.version,
            kind=service.kind,
            stateless=service.stateless,
            path=self._packages(service),
            sha256=service.sha256,
            images=images,
            snapshot=shipped,
        )

    async def probe(self, endpoint: str, timeout: float) -> None:
        """Readiness from the SP's side: the endpoint serves its WSDL."""
        try:
            response = await self._pool.request(
                endpoint + "?wsdl", "GET", headers=[], timeout=timeout
            )
            await response.read_all(4 << 20)
        except DynasoarError as exc:
            raise DeploymentFailed(
                f"the new endpoint {endpoint} does not answer: {exc.reason}"
            ) from exc
        if response.status != 200:
            raise DeploymentFailed(f"the new endpoint {endpoint} answered HTTP {response.status}")

    async def undeploy(self, host: str, deployment_id: str, timeout: float = 30.0) -> bool:
        """Ask ``host`` to undeploy; a host that does not answer is logged, not raised."""
        try:
            done = await self._client.undeploy(host, deployment_id, timeout=timeout)
        except DynasoarError as exc:
            log.warning("could not undeploy %s on %s: %s", deployment_id, host, exc.reason)
            self.observer.undeployed(host, deployment_id, False)
            return False
        self.observer.undeployed(host, deployment_id, True)
        if done:
            self.on_count(host, -1)
        return done

    def undeploy_later(self, host: str, deployment_id: str) -> None:
        task = asyncio.create_task(self.undeploy(host, deployment_id, timeout=10.0))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        if self.snapshots is not None:
            await self.snapshots.close()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
