"""The Service Provider's VM snapshots: one per published VM version, fetched from the host that
took it (just after the version's first boot there) into the repository's content-addressed
store, and shipped with a Deploy to a host that has none of that package, so that it restores
a copy instead of booting (only the parts it lacks travel).

A snapshot is learnt in the background after a cold boot of a version the SP has no snapshot of
(the host keeps its snapshot a moment after the Deploy returns: the SP asks a few times).
Descriptors are kept in the registry's database (table ``snapshots``, by the package and images
they are of: a version published again with the same content keeps its snapshot), parts in
``DATA/repository/images`` beside the images (kept like them).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path

from dynasoar.consumer.host_client import HostClient
from dynasoar.errors import DynasoarError
from dynasoar.images import ImageCache
from dynasoar.provider.records import upsert
from dynasoar.provider.registry import Registry, ServiceRecord
from dynasoar.snapshots import Snapshot, package_key

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    key TEXT PRIMARY KEY, digest TEXT NOT NULL, service TEXT NOT NULL, version TEXT NOT NULL,
    descriptor BLOB NOT NULL, source TEXT NOT NULL
);
"""
#: How often, and how far apart, a host is asked for the snapshot it is keeping.
ASKS = (1.0, 2.0, 4.0, 8.0, 15.0)


def key_of(service: ServiceRecord) -> str:
    """Which package (with which images) a snapshot of ``service`` must be of."""
    return package_key(service.sha256, [(i.name, i.sha256) for i in service.images])


class SnapshotLibrary:
    def __init__(
        self, registry: Registry, images: ImageCache, client: HostClient, spool: Path
    ) -> None:
        self._registry = registry
        self._images = images
        self._client = client
        self._spool = spool
        registry.adopt(SCHEMA)
        self._learning: dict[str, asyncio.Task[None]] = {}

    def of(self, service: ServiceRecord) -> Snapshot | None:
        """The snapshot of this version, when the SP holds all of it."""
        if service.kind != "vm":
            return None
        rows = self._registry.query(
            "SELECT descriptor FROM snapshots WHERE key = ?", (key_of(service),)
        )
        if not rows:
            return None
        try:
            snapshot = Snapshot.parse(rows[0][0])
        except ValueError:
            return None
        if not all(self._images.holds(part.sha256) for part in snapshot.parts):
            return None
        return snapshot

    def all(self) -> list[tuple[str, str, str, int]]:
        """(service, version, digest, bytes) of every snapshot held."""
        found = []
        for service, version, descriptor in self._registry.query(
            "SELECT service, version, descriptor FROM snapshots ORDER BY service, version"
        ):
            try:
                snapshot = Snapshot.parse(descriptor)
            except ValueError:
                continue
            found.append((service, version, snapshot.digest, snapshot.size))
        return found

    def path(self, sha256: str) -> Path:
        return self._images.path(sha256)

    # -- learning one from a host ---------------------------------------------------------------

    def learn_later(self, host: str, service: ServiceRecord) -> None:
        """After a cold boot of ``service`` on ``host``: fetch the snapshot it is taking."""
        key = key_of(service)
        if service.kind != "vm" or key in self._learning or self.of(service) is not None:
            return
        task = asyncio.create_task(self._learn(host, service, key))
        self._learning[key] = task
        task.add_done_callback(lambda _: self._learning.pop(key, None))

    async def _learn(self, host: str, service: ServiceRecord, key: str) -> None:
        for delay in ASKS:
            await asyncio.sleep(delay)
            try:
                _, listed = await self._client.query_cache(host, [], timeout=10.0)
            except DynasoarError as exc:
                log.info("no snapshot of %s from %s: %s", service.name, host, exc.reason)
                return
            found = next((s for s in listed if s.key == key and s.kind == "image"), None)
            if found is not None:
                await self.fetch(host, service, found)
                return
        log.info("%s took no snapshot of %s %s", host, service.name, service.version)

    async def fetch(self, host: str, service: ServiceRecord, snapshot: Snapshot) -> None:
        """Bring ``snapshot``'s parts the SP lacks into its store, and keep it for the
        version."""
        have = {p.sha256 for p in snapshot.parts if self._images.holds(p.sha256)}
        spool = Path(tempfile.mkdtemp(prefix="snapshot-", dir=self._spool))
        try:
            got, paths = await self._client.get_snapshot(
                host, snapshot.digest, have, spool, timeout=600.0
            )
            for path in paths.values():
                # hashed again (digest-checked), on a thread: ~0.3 s per 100 MB
                await asyncio.to_thread(self._images.adopt, path, "snapshot part")
                path.unlink(missing_ok=True)
            if not all(self._images.holds(part.sha256) for part in got.parts):
                log.warning("the snapshot of %s from %s came incomplete", service.name, host)
                return
            with self._registry.transaction() as db:
                db.execute(
                    upsert("snapshots", "key, digest, service, version, descriptor, source", "key"),
                    (key_of(service), got.digest, got.service, got.version, got.canonical(), host),
                )
            log.info(
                "kept snapshot %s of %s %s from %s (%d bytes)",
                got.digest[:12],
                service.name,
                service.version,
                host,
                got.size,
            )
        except DynasoarError as exc:
            log.warning("could not fetch the snapshot of %s from %s: %s", service.name, host, exc)
        finally:
            shutil.rmtree(spool, ignore_errors=True)

    async def close(self) -> None:
        for task in list(self._learning.values()):
            task.cancel()
        await asyncio.gather(*self._learning.values(), return_exceptions=True)
