"""The content-addressed image store: digests checked, pinned images never evicted, LRU order."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from dynasoar.errors import MalformedMessage
from dynasoar.images import ImageCache, sha256_file
from dynasoar.soap.mtom import Attachment


def spooled(tmp: Path, data: bytes, name: str = "part") -> Attachment:
    path = tmp / f"spool-{name}"
    path.write_bytes(data)
    return Attachment(
        name, "application/octet-stream", path, len(data), hashlib.sha256(data).hexdigest()
    )


def test_store_moves_the_file_in_read_only(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images", capacity=1 << 20)
    att = spooled(tmp_path, b"disk bytes")
    path = cache.store(att, att.sha256)
    assert path.read_bytes() == b"disk bytes"
    assert not att.path.exists()
    assert oct(path.stat().st_mode & 0o777) == "0o444"
    assert cache.holds(att.sha256) and cache.query([att.sha256, "0" * 64]) == [att.sha256]
    assert cache.stats().received == len(b"disk bytes")


def test_digest_mismatch_is_refused_and_stores_nothing(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images")
    att = spooled(tmp_path, b"one thing")
    with pytest.raises(MalformedMessage, match="digest mismatch"):
        cache.store(att, hashlib.sha256(b"another").hexdigest())
    assert cache.stats().images == 0


@pytest.mark.parametrize("digest", ["", "abc", "../etc/passwd", "G" * 64, "A" * 63])
def test_only_hex_digests_name_files(tmp_path: Path, digest: str) -> None:
    cache = ImageCache(tmp_path / "images")
    assert not cache.holds(digest)
    with pytest.raises(MalformedMessage):
        cache.path(digest)


def test_eviction_is_lru_and_spares_pinned_images(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images", capacity=250)
    digests = []
    for i in range(3):
        att = spooled(tmp_path, bytes([i]) * 100, str(i))
        cache.store(att, att.sha256)
        os.utime(cache.path(att.sha256), (1000 + i, 1000 + i))  # 0 oldest, 2 newest
        digests.append(att.sha256)
    cache.acquire(digests[0], None)
    assert cache.evict() == [digests[1]]  # oldest unpinned goes first
    assert cache.stats().bytes == 200
    cache.unpin([digests[0]])
    cache.capacity = 100
    assert cache.evict() == [digests[2]]  # pinning 0 was a use: now 2 is the older
    assert cache.query(digests) == [digests[0]]


def test_an_image_another_deploy_acquired_survives_a_refused_deploys_discard(
    tmp_path: Path,
) -> None:
    """Two Deploys bring the same image; the one that took it in is refused and discards what
    it brought. The other holds a pin from the moment it found the image, so it stays."""
    cache = ImageCache(tmp_path / "images")
    first = spooled(tmp_path, b"shared base", "first")
    second = spooled(tmp_path, b"shared base", "second")
    assert cache.acquire(first.sha256, first) == (cache.path(first.sha256), True)
    assert cache.acquire(second.sha256, second) == (cache.path(first.sha256), False)
    assert cache.acquire(first.sha256, None) == (cache.path(first.sha256), False)
    cache.unpin([first.sha256])  # the refused Deploy lets go and discards
    cache.discard([first.sha256])
    assert cache.holds(first.sha256)
    cache.unpin([first.sha256, first.sha256])
    cache.discard([first.sha256])
    assert not cache.holds(first.sha256)
    assert cache.acquire(first.sha256, None) is None  # neither held nor sent


def test_acquire_races_discard_without_losing_a_pinned_image(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images", capacity=0)
    data = b"contended image"
    lost = []

    def deploy(i: int) -> None:
        for round_ in range(200):
            acquired = cache.acquire(hashlib.sha256(data).hexdigest(), None)
            if acquired is None:
                att = spooled(tmp_path, data, f"{i}-{round_}")
                acquired = cache.acquire(att.sha256, att)
                assert acquired is not None
            path, taken = acquired
            if not path.is_file():
                lost.append(path)
            cache.unpin([path.name])
            if taken:
                cache.discard([path.name])  # refused: takes back what it brought
            cache.evict()

    threads = [threading.Thread(target=deploy, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not lost


def test_pins_are_counted(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images", capacity=0)
    att = spooled(tmp_path, b"x" * 10)
    cache.store(att, att.sha256)
    cache.acquire(att.sha256, None)
    cache.acquire(att.sha256, None)
    cache.unpin([att.sha256])
    assert cache.evict() == []
    cache.unpin([att.sha256])
    assert cache.evict() == [att.sha256]


def test_adopt_hashes_and_keeps_one_copy(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images")
    first, second = tmp_path / "a.img", tmp_path / "b.img"
    first.write_bytes(b"same")
    second.write_bytes(b"same")
    ref = cache.adopt(first, "disk.qcow2")
    assert (ref.name, ref.size) == ("disk.qcow2", 4)
    assert ref.sha256 == sha256_file(cache.path(ref.sha256))
    assert cache.adopt(second, "disk.qcow2") == ref
    assert cache.stats().images == 1


def test_concurrent_stores_of_one_image(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "images")
    atts = [spooled(tmp_path, b"shared image", str(i)) for i in range(8)]
    threads = [threading.Thread(target=cache.store, args=(a, a.sha256)) for a in atts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.stats().images == 1
    assert cache.path(atts[0].sha256).read_bytes() == b"shared image"
