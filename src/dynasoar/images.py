"""Content-addressed VM image stores: images kept by SHA-256, never written once stored.

The Host Provider's image cache pins images while deployments use them and evicts the
least-recently-used unpinned ones when it grows over its capacity; the Service Provider's
repository keeps its images the same way (with no capacity)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from dynasoar.errors import MalformedMessage
from dynasoar.soap.mtom import Attachment

log = logging.getLogger(__name__)

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
UNLIMITED = 1 << 62


@dataclass(frozen=True)
class ImageRef:
    """An image a VM package needs: the manifest's name for it (or "base"), its digest, size."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class IncomingImage:
    """An image named in a Publish or Deploy: its content arrived as an attachment, or was
    left out because the receiver was expected to hold it already."""

    name: str
    sha256: str
    attachment: Attachment | None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheStats:
    images: int
    bytes: int
    capacity: int
    received: int  # image bytes taken in since start (what caching saves shows here)


class ImageCache:
    def __init__(self, root: Path, capacity: int = UNLIMITED) -> None:
        self.root = root
        self.capacity = capacity
        root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pins: Counter[str] = Counter()
        self._received = 0
        for leftover in root.glob("*.partial"):
            leftover.unlink(missing_ok=True)

    def path(self, sha256: str) -> Path:
        if not SHA256_RE.match(sha256):
            raise MalformedMessage(f"{sha256!r} is not a hex SHA-256 digest")
        return self.root / sha256

    def holds(self, sha256: str) -> bool:
        return SHA256_RE.match(sha256) is not None and (self.root / sha256).is_file()

    def query(self, digests: list[str]) -> list[str]:
        """Which of these digests (in either case) are held, in lower case as stored."""
        return [d for d in (digest.lower() for digest in digests) if self.holds(d)]

    def store(self, attachment: Attachment, sha256: str) -> Path:
        """Take a received image in (moved, not copied) after checking its digest against
        the one its sender declared."""
        target, _ = self._store(attachment, sha256, pin=False)
        return target

    def acquire(self, sha256: str, attachment: Attachment | None) -> tuple[Path, bool] | None:
        """Pin an image for a deployment, taking it in first if it came as an attachment:
        its path and whether this call brought it into the cache, or None when it is neither
        held nor sent. Checking, storing and pinning happen under one lock, so a concurrent
        discard (a refused Deploy's) or eviction cannot remove it in between."""
        if attachment is not None:
            return self._store(attachment, sha256, pin=True)
        target = self.path(sha256.lower())
        with self._lock:
            if not target.is_file():
                return None
            self._pins[target.name] += 1
        self.touch(target.name)
        return target, False

    def _store(self, attachment: Attachment, sha256: str, pin: bool) -> tuple[Path, bool]:
        target = self.path(sha256.lower())
        if attachment.sha256 != sha256.lower():
            raise MalformedMessage(
                f"image digest mismatch: received {attachment.sha256}, declared {sha256}"
            )
        with self._lock:
            self._received += attachment.size
            taken = not target.exists()
            if taken:
                os.chmod(attachment.path, 0o444)
                shutil.move(attachment.path, target)
            if pin:
                self._pins[target.name] += 1
        self.touch(target.name)
        return target, taken

    def adopt(self, path: Path, name: str) -> ImageRef:
        """Take in a file that arrived some other way (inside an archive): hash it, move it."""
        digest = sha256_file(path)
        size = path.stat().st_size
        target = self.path(digest)
        with self._lock:
            if not target.exists():
                os.chmod(path, 0o444)
                shutil.move(path, target)
        self.touch(digest)
        return ImageRef(name, digest, size)

    def touch(self, sha256: str) -> None:
        """Mark as just used (the LRU order is the files' mtimes, so it survives restarts)."""
        try:
            os.utime(self.path(sha256))
        except FileNotFoundError:
            pass

    def unpin(self, digests: list[str]) -> None:
        with self._lock:
            self._pins.subtract(digests)
            self._pins = +self._pins  # drop zero counts

    def discard(self, digests: list[str]) -> None:
        """Remove these images now, unless something pins them (a refused Deploy's)."""
        with self._lock:
            for digest in digests:
                if self._pins[digest] <= 0:
                    self.path(digest).unlink(missing_ok=True)

    def evict(self) -> list[str]:
        """Remove least-recently-used unpinned images until the cache fits its capacity."""
        with self._lock:
            files = [(p.stat().st_mtime, p.stat().st_size, p) for p in self._images()]
            total = sum(size for _, size, _ in files)
            evicted = []
            for _, size, path in sorted(files, key=lambda f: f[0]):
                if total <= self.capacity:
                    break
                if self._pins[path.name] > 0:
                    continue
                path.unlink(missing_ok=True)
                total -= size
                evicted.append(path.name)
        for digest in evicted:
            log.info("evicted image %s from the cache", digest)
        return evicted

    def stats(self) -> CacheStats:
        with self._lock:
            sizes = [p.stat().st_size for p in self._images()]
            return CacheStats(len(sizes), sum(sizes), self.capacity, self._received)

    def held(self) -> list[Path]:
        """Every image's file."""
        with self._lock:
            return self._images()

    def _images(self) -> list[Path]:
        return [p for p in self.root.iterdir() if SHA256_RE.match(p.name)]
