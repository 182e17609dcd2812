"""The Host Provider's VM snapshots, kept beside its images: every part (memory stream, disk
layers) and the descriptor itself are files of the image cache, by digest, pinned while a
deployment uses them and evicted least-recently-used with the images; an index says which image
snapshot is of which package (``DATA/snapshots/<package key>`` holds a descriptor's digest).

A snapshot is usable only while its descriptor and all its parts are held; one whose part was
evicted is forgotten (the next boot of its package takes a new one).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path

from dynasoar.images import SHA256_RE, ImageCache, ImageRef
from dynasoar.snapshots import Snapshot, SnapshotStats

log = logging.getLogger(__name__)

#: A descriptor is a few hundred bytes; a cache file bigger than this is no descriptor.
MAX_DESCRIPTOR = 64 << 10


class SnapshotStore:
    def __init__(self, cache: ImageCache, index: Path) -> None:
        self.cache = cache
        self.index = index
        index.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.counts = SnapshotStats()

    def add(self, snapshot: Snapshot) -> str:
        """Keep the descriptor (its parts are in the cache already); an image snapshot is
        indexed as its package's. Returns the descriptor's digest."""
        data = snapshot.canonical()
        fd, name = tempfile.mkstemp(prefix="snapshot-", suffix=".partial", dir=self.cache.root)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        digest = self.keep(Path(name), "snapshot").sha256
        if snapshot.kind == "image":
            entry = self.index / snapshot.key
            partial = entry.with_suffix(".partial")
            partial.write_text(digest)
            os.replace(partial, entry)
        return digest

    def get(self, digest: str) -> Snapshot | None:
        """A descriptor held here (its parts may not be)."""
        if not self.cache.holds(digest.lower()):
            return None
        path = self.cache.path(digest.lower())
        try:
            if path.stat().st_size > MAX_DESCRIPTOR:
                return None
            return Snapshot.parse(path.read_bytes())
        except (OSError, ValueError):
            return None

    def complete(self, snapshot: Snapshot) -> bool:
        return self.cache.holds(snapshot.digest) and all(
            self.cache.holds(part.sha256) for part in snapshot.parts
        )

    def find(self, key: str) -> Snapshot | None:
        """The image snapshot of the package ``key`` names, if all of it is held."""
        if not SHA256_RE.match(key):
            return None
        try:
            digest = (self.index / key).read_text().strip()
        except OSError:
            return None
        snapshot = self.get(digest)
        if snapshot is None or snapshot.key != key or not self.complete(snapshot):
            log.info("the snapshot of package key %s is gone (evicted); forgetting it", key[:12])
            (self.index / key).unlink(missing_ok=True)
            return None
        return snapshot

    def forget(self, snapshot: Snapshot) -> None:
        """No longer this package's snapshot (it did not restore); its files go with the
        cache's eviction."""
        entry = self.index / snapshot.key
        try:
            if entry.read_text().strip() == snapshot.digest:
                entry.unlink()
        except OSError:
            pass

    def image_snapshots(self) -> list[Snapshot]:
        found = []
        for entry in sorted(self.index.iterdir()):
            if SHA256_RE.match(entry.name):
                snapshot = self.find(entry.name)
                if snapshot is not None:
                    found.append(snapshot)
        return found

    def acquire(self, snapshot: Snapshot) -> list[str] | None:
        """Pin the descriptor and every part for a deployment; None (nothing pinned) when one
        is not held."""
        pinned: list[str] = []
        for digest in (snapshot.digest, *(part.sha256 for part in snapshot.parts)):
            if self.cache.acquire(digest, None) is None:
                self.cache.unpin(pinned)
                return None
            pinned.append(digest)
        return pinned

    def paths(self, snapshot: Snapshot) -> tuple[Path, tuple[Path, ...]]:
        """Where its memory stream and its layers (lowest first) are."""
        return (
            self.cache.path(snapshot.memory.sha256),
            tuple(self.cache.path(layer.sha256) for layer in snapshot.layers),
        )

    def stats(self) -> SnapshotStats:
        held = self.image_snapshots()
        with self._lock:
            counts = self.counts
            return SnapshotStats(
                len(held),
                sum(s.size for s in held),
                counts.taken,
                counts.restored,
                counts.fallbacks,
            )

    def count(self, what: str) -> None:
        with self._lock:
            setattr(self.counts, what, getattr(self.counts, what) + 1)

    def keep(self, path: Path, name: str) -> ImageRef:
        """A file just made here, moved into the cache by digest (or dropped: it was there)."""
        ref = self.cache.adopt(path, name)
        path.unlink(missing_ok=True)
        return ref
