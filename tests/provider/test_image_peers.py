"""VM images fetched from and served to peer SPs, over real HTTP on 127.0.0.1 and a real shared
PostgreSQL registry: an image streams into the repository checked, once for concurrent needs;
what is not the image (wrong bytes, short, too long) is discarded, never stored; requests
without the registry's secret get 403, unknown digests 404; no running holder, or one that
hangs, is a clear dyn:ImageUnavailable, never a hang."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dynasoar.errors import ImageUnavailable
from dynasoar.http import ConnectionPool, HttpServer, Request, Response
from dynasoar.images import ImageCache, ImageRef
from dynasoar.provider.image_holders import AUTH_HEADER, ImageHolders
from dynasoar.provider.image_peers import IMAGES_PATH, PeerImages
from dynasoar.provider.registry import Registry

CONTENT = os.urandom(3 << 20) + b"tail"  # a few chunks, and a part of one
DIGEST = hashlib.sha256(CONTENT).hexdigest()
REF = ImageRef("disk.qcow2", DIGEST, len(CONTENT))


@dataclass
class Sp:
    """One SP's part in this: its registry connection, image store, holders, peers, server."""

    registry: Registry
    images: ImageCache
    holders: ImageHolders
    peers: PeerImages
    pool: ConnectionPool
    server: HttpServer | None = None
    url: str = ""
    requests: list[str] = field(default_factory=list)


class Sps:
    def __init__(self, pg_url: str, root: Path) -> None:
        self.pg_url = pg_url
        self.root = root
        self.made: list[Sp] = []

    async def start(
        self,
        held: bytes | None = None,
        handler: Callable[[Sp, Request], Awaitable[Response]] | None = None,
        timeout: float = 30.0,
        head_timeout: float = 10.0,
    ) -> Sp:
        """An SP holding ``held`` (if given) that serves its images (or answers ``handler``)."""
        registry = Registry(self.pg_url)
        registry.hold_instance()
        images = ImageCache(self.root / f"sp{len(self.made) + 1}" / "images")
        holders = ImageHolders(registry)
        pool = ConnectionPool()
        peers = PeerImages(holders, images, pool, timeout, head_timeout)
        sp = Sp(registry, images, holders, peers, pool)
        self.made.append(sp)
        if held is not None:
            (images.root / DIGEST).write_bytes(held)

        async def serve(request: Request) -> Response:
            sp.requests.append(request.path)
            return await (handler(sp, request) if handler else sp.peers.serve(request))

        sp.server = HttpServer(serve)
        host, port = await sp.server.start("127.0.0.1", 0)
        sp.url = f"http://{host}:{port}"
        holders.start(sp.url, {DIGEST: len(CONTENT)} if held is not None else {})
        return sp

    async def close(self) -> None:
        for sp in self.made:
            sp.peers.close()
            if sp.server is not None:
                await sp.server.close(grace=0.5)
            await sp.pool.close()
            sp.registry.close()


@pytest.fixture
def sps(pg_url: str, tmp_path: Path) -> Iterator[Sps]:
    yield Sps(pg_url, tmp_path)


def run(sps: Sps, main: Callable[[], Awaitable[Any]]) -> Any:
    async def whole() -> Any:
        try:
            return await asyncio.wait_for(main(), timeout=60)
        finally:
            await sps.close()

    return asyncio.run(whole())


def leftovers(sp: Sp) -> list[str]:
    return sorted(p.name for p in sp.images.root.iterdir())


def test_an_image_is_fetched_checked_and_its_fetcher_becomes_a_holder(sps: Sps) -> None:
    async def main() -> None:
        holder = await sps.start(held=CONTENT)
        lacking = await sps.start()
        await lacking.peers.ensure([REF], "VmEcho 1.0")
        assert (lacking.images.root / DIGEST).read_bytes() == CONTENT
        assert leftovers(lacking) == [DIGEST]  # no spool file left behind
        assert (lacking.peers.fetched, lacking.peers.fetched_bytes) == (1, len(CONTENT))
        assert [h.url for h in holder.holders.holders(DIGEST)] == [lacking.url]
        await lacking.peers.ensure([REF], "VmEcho 1.0")  # held now: not fetched again
        assert holder.requests == [f"{IMAGES_PATH}sha256:{DIGEST}"]

    run(sps, main)


def test_concurrent_needs_of_one_image_fetch_it_once(sps: Sps) -> None:
    async def main() -> None:
        holder = await sps.start(held=CONTENT)
        lacking = await sps.start()
        await asyncio.gather(*(lacking.peers.ensure([REF], "VmEcho 1.0") for _ in range(12)))
        assert len(holder.requests) == 1
        assert lacking.peers.fetched == 1
        assert (lacking.images.root / DIGEST).read_bytes() == CONTENT

    run(sps, main)


def test_only_sps_that_share_the_registry_read_its_images(sps: Sps, tmp_path: Path) -> None:
    async def main() -> None:
        holder = await sps.start(held=CONTENT)
        url = f"{holder.url}{IMAGES_PATH}sha256:{DIGEST}"
        stranger = ImageHolders(Registry(tmp_path / "elsewhere.sqlite"))

        async def get(target: str, auth: str | None, method: str = "GET") -> tuple[int, bytes]:
            headers = [(AUTH_HEADER, auth)] if auth is not None else []
            response = await holder.pool.request(target, method, headers=headers, timeout=10)
            return response.status, await response.read_all(8 << 20)

        status, body = await get(url, stranger.sign(DIGEST, holder.holders.url))
        assert status == 403 and b"does not match" in body
        assert (await get(url, None))[0] == 403
        assert (await get(url, holder.holders.sign(DIGEST, holder.holders.url, at=0.0)))[
            0
        ] == 403  # too old
        assert (await get(url, holder.holders.sign("0" * 64, holder.holders.url)))[
            0
        ] == 403  # another image's
        other = f"{holder.url}{IMAGES_PATH}sha256:{'0' * 64}"
        assert (await get(other, holder.holders.sign("0" * 64, holder.holders.url)))[0] == 404
        assert (await get(f"{holder.url}{IMAGES_PATH}{DIGEST}", None))[0] == 404
        assert (await get(url, holder.holders.sign(DIGEST, holder.holders.url), "POST"))[0] == 405
        assert await get(url, holder.holders.sign(DIGEST, holder.holders.url)) == (200, CONTENT)

    run(sps, main)


def test_a_request_s_header_reads_once_and_from_the_sp_it_was_made_for(sps: Sps) -> None:
    """A header seen on the way (a log, a proxy) fetches nothing again: not from the SP it
    was made for, not from another holder sharing the registry."""

    async def main() -> None:
        holder = await sps.start(held=CONTENT)
        other = await sps.start(held=CONTENT)
        path = f"{IMAGES_PATH}sha256:{DIGEST}"

        async def get(base: str, auth: str) -> tuple[int, bytes]:
            response = await holder.pool.request(
                base + path, "GET", headers=[(AUTH_HEADER, auth)], timeout=10
            )
            return response.status, await response.read_all(8 << 20)

        auth = holder.holders.sign(DIGEST, holder.holders.url)
        assert await get(holder.url, auth) == (200, CONTENT)
        status, body = await get(holder.url, auth)
        assert status == 403 and b"used before" in body
        status, body = await get(other.url, holder.holders.sign(DIGEST, holder.holders.url))
        assert status == 403 and b"does not match" in body
        assert await get(other.url, holder.holders.sign(DIGEST, other.holders.url)) == (
            200,
            CONTENT,
        )

    run(sps, main)


def test_a_response_streams_from_disk(sps: Sps) -> None:
    async def main() -> None:
        holder = await sps.start(held=CONTENT)
        request_headers = [(AUTH_HEADER, holder.holders.sign(DIGEST, holder.holders.url))]
        response = await holder.pool.request(
            f"{holder.url}{IMAGES_PATH}sha256:{DIGEST}",
            "GET",
            headers=request_headers,
            timeout=10,
        )
        assert response.headers.get("content-length") == str(len(CONTENT))
        first = await response.body.read()
        assert 0 < len(first) < len(CONTENT)  # the head came before the whole file
        assert first + await response.read_all(8 << 20) == CONTENT

    run(sps, main)


async def lying(body: bytes) -> Callable[[Sp, Request], Awaitable[Response]]:
    async def answer(sp: Sp, request: Request) -> Response:
        return Response(200, [("Content-Type", "application/octet-stream")], body)

    return answer


@pytest.mark.parametrize(
    ("sent", "why"),
    [
        (os.urandom(len(CONTENT)), "is not the image"),
        (CONTENT[:-1], "is not the image"),
        (CONTENT + b"more", "more than the image's"),
    ],
    ids=["other-bytes", "short", "too-long"],
)
def test_what_is_not_the_image_is_discarded_never_stored(sps: Sps, sent: bytes, why: str) -> None:
    async def main() -> None:
        await sps.start(held=CONTENT, handler=await lying(sent))
        lacking = await sps.start()
        with pytest.raises(ImageUnavailable) as failed:
            await lacking.peers.ensure([REF], "VmEcho 1.0")
        assert why in failed.value.reason
        assert leftovers(lacking) == []
        assert lacking.holders.recorded(DIGEST)[0].url != lacking.url

    run(sps, main)


def test_a_body_cut_short_by_its_peer_is_discarded(sps: Sps) -> None:
    async def cut(sp: Sp, request: Request) -> Response:
        async def half() -> AsyncIterator[bytes]:
            yield CONTENT[: len(CONTENT) // 2]
            raise ConnectionResetError("the peer stopped")

        headers = [("Content-Length", str(len(CONTENT)))]
        return Response(200, headers, half())

    async def main() -> None:
        await sps.start(held=CONTENT, handler=cut)
        lacking = await sps.start()
        with pytest.raises(ImageUnavailable):
            await lacking.peers.ensure([REF], "VmEcho 1.0")
        assert leftovers(lacking) == []

    run(sps, main)


def test_a_failing_holder_is_passed_over_for_another(sps: Sps) -> None:
    async def main() -> None:
        await sps.start(held=CONTENT, handler=await lying(b"x" * len(CONTENT)))
        await sps.start(held=CONTENT)
        lacking = await sps.start()
        await lacking.peers.ensure([REF], "VmEcho 1.0")
        assert (lacking.images.root / DIGEST).read_bytes() == CONTENT

    run(sps, main)


def test_a_holder_that_lost_the_image_answers_404_and_its_row_goes(sps: Sps) -> None:
    async def main() -> None:
        holder = await sps.start(held=CONTENT)
        (holder.images.root / DIGEST).unlink()  # its disk lost it
        lacking = await sps.start()
        with pytest.raises(ImageUnavailable) as failed:
            await lacking.peers.ensure([REF], "VmEcho 1.0")
        assert "does not hold the image" in failed.value.reason
        assert lacking.holders.recorded(DIGEST) == []

    run(sps, main)


def test_no_running_holder_is_a_clear_fault(sps: Sps) -> None:
    async def main() -> None:
        lacking = await sps.start()
        with pytest.raises(ImageUnavailable) as none:
            await lacking.peers.ensure([REF], "VmEcho 1.0")
        assert "no running SP sharing the registry holds it" in none.value.reason
        assert "VmEcho 1.0's image 'disk.qcow2'" in none.value.reason
        holder = await sps.start(held=CONTENT)
        assert holder.server is not None
        await holder.server.close(grace=0.5)
        holder.registry.close()  # stopped: its instance lock is gone with it
        with pytest.raises(ImageUnavailable) as stopped:
            await lacking.peers.ensure([REF], "VmEcho 1.0")
        assert f"recorded at {holder.url}, not running" in stopped.value.reason
        assert leftovers(lacking) == []

    run(sps, main)


def test_a_holder_that_hangs_costs_the_deadline_not_a_hang(sps: Sps) -> None:
    async def hang(sp: Sp, request: Request) -> Response:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def main() -> None:
        await sps.start(held=CONTENT, handler=hang)
        lacking = await sps.start(timeout=1.0)
        with pytest.raises(ImageUnavailable) as late:
            await lacking.peers.ensure([REF], "VmEcho 1.0")
        assert "took over 1 s" in late.value.reason
        assert leftovers(lacking) == []

    run(sps, main)


def test_a_holder_that_does_not_answer_is_passed_over_for_another(sps: Sps) -> None:
    async def hang(sp: Sp, request: Request) -> Response:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def main() -> None:
        await sps.start(held=CONTENT, handler=hang)
        await sps.start(held=CONTENT)
        lacking = await sps.start(head_timeout=0.5)
        await lacking.peers.ensure([REF], "VmEcho 1.0")
        assert (lacking.images.root / DIGEST).read_bytes() == CONTENT

    run(sps, main)
