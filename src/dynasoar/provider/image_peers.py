"""VM images between Service Providers that share a registry but not a disk: fetching an image
this SP lacks from a running peer that holds it, and serving the images this SP holds to its
peers (``GET /dynasoar/images/sha256:HEX`` on the SP's HTTP port).

A fetch streams the image into this SP's repository through the store a publish uses: the
bytes go to a spool file beside the store, hashed as they come; a body longer than the size
recorded for the image is cut off, and one that is short or whose SHA-256 differs is
discarded, never stored. Each fetch has a deadline; concurrent needs of the same image in
this process fetch it once. An image no running peer could send is
:class:`~dynasoar.errors.ImageUnavailable`, naming the peers tried and why each failed.

Serving reads the file from disk in chunks as the connection takes them, never whole in
memory; only a request whose :data:`~.image_holders.AUTH_HEADER` proves the registry's
secret is served (403 otherwise; 404 for a digest not held here)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import BinaryIO

from dynasoar.errors import DynasoarError, ImageUnavailable, TransportError
from dynasoar.http import ConnectionPool, Request, Response
from dynasoar.images import ImageCache, ImageRef
from dynasoar.provider.image_holders import AUTH_HEADER, Holder, ImageHolders
from dynasoar.provider.singleflight import SingleFlight
from dynasoar.soap.mtom import Attachment

log = logging.getLogger(__name__)

IMAGES_PATH = "/dynasoar/images/"
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
#: Bytes read from disk (served) or written to it (fetched) at a time.
CHUNK = 1 << 20
#: How long a holder may take to start answering before the next is tried.
HEAD_TIMEOUT = 10.0


class PeerImages:
    def __init__(
        self,
        holders: ImageHolders,
        images: ImageCache,
        pool: ConnectionPool,
        timeout: float,
        head_timeout: float = HEAD_TIMEOUT,
    ) -> None:
        self._holders = holders
        self._images = images
        self._pool = pool
        #: How long fetching one image (from every holder tried) may take.
        self.timeout = timeout
        #: How long one holder may take to start answering before the next is tried.
        self.head_timeout = head_timeout
        self._flight: SingleFlight[None] = SingleFlight()
        #: Images fetched from peers since start, and their bytes (status page, tests).
        self.fetched = 0
        self.fetched_bytes = 0

    # -- fetching what this SP lacks ---------------------------------------------------------

    async def ensure(self, refs: Sequence[ImageRef], what: str) -> None:
        """Every image of ``refs`` in this SP's repository: those it lacks fetched from peers
        (concurrently). ``what`` names the package, for the fault."""
        missing = {r.sha256: r for r in refs if not self._images.holds(r.sha256)}
        if missing:
            await asyncio.gather(*(self._one(ref, what) for ref in missing.values()))

    async def _one(self, ref: ImageRef, what: str) -> None:
        try:
            await self._flight.do(ref.sha256, lambda: self._fetch(ref, what), self.timeout)
        except TimeoutError as exc:
            raise ImageUnavailable(
                f"{what}'s image {ref.name!r} (sha256:{ref.sha256}) is not in this Service "
                f"Provider's repository, and fetching it from another SP took over "
                f"{self.timeout:.0f} s"
            ) from exc

    async def _fetch(self, ref: ImageRef, what: str) -> None:
        if self._images.holds(ref.sha256):  # it came in meanwhile (a publish)
            return
        holders = self._holders.holders(ref.sha256)
        random.shuffle(holders)  # several holders share the load
        reasons = []
        deadline = asyncio.get_running_loop().time() + self.timeout
        for holder in holders:
            try:
                size = await self._fetch_from(holder, ref.sha256, deadline)
            except DynasoarError as exc:
                log.warning(
                    "image sha256:%s not fetched from %s: %s", ref.sha256, holder.url, exc.reason
                )
                reasons.append(f"{holder.url}: {exc.reason}")
                continue
            self._recorded(partial(self._holders.hold, [(ref.sha256, size)]))  # a holder too
            return
        if not reasons:
            recorded = self._holders.recorded(ref.sha256)
            reasons.append(
                "no running SP sharing the registry holds it"
                + (
                    f" (recorded at {', '.join(h.url for h in recorded)}, not running)"
                    if recorded
                    else ""
                )
            )
        raise ImageUnavailable(
            f"{what}'s image {ref.name!r} (sha256:{ref.sha256}) is not in this Service "
            f"Provider's repository and could not be fetched from another SP: "
            + "; ".join(reasons)
            + ". Publish the package again, or start an SP that holds it"
        )

    async def _fetch_from(self, holder: Holder, digest: str, deadline: float) -> int:
        """Stream ``digest`` from ``holder`` into the repository by ``deadline`` (a loop
        time); returns its size. A holder that does not start answering within the head
        timeout is passed over, leaving the time to the next."""
        url = f"{holder.url}{IMAGES_PATH}sha256:{digest}"
        headers = [(AUTH_HEADER, self._holders.sign(digest, holder.url))]
        spool = self._images.root / f"{digest}.{uuid.uuid4().hex[:8]}.partial"
        started = asyncio.get_running_loop().time()
        left = max(0.0, deadline - started)
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._pool.request(
                    url, "GET", headers=headers, timeout=min(left, self.head_timeout)
                )
                async with response:
                    if response.status == 404:
                        self._recorded(partial(self._holders.drop, digest, holder.url))
                        raise ImageUnavailable("it does not hold the image (any more)")
                    if response.status != 200:
                        why = (await response.read_all(4096)).decode("utf-8", "replace").strip()
                        raise ImageUnavailable(f"it answered HTTP {response.status}: {why}")
                    size, sha256 = await _receive(response.body, spool, holder.size)
        except TimeoutError as exc:
            spool.unlink(missing_ok=True)
            raise TransportError(f"no whole image within {left:.0f} s") from exc
        except BaseException:
            spool.unlink(missing_ok=True)
            raise
        if size != holder.size or sha256 != digest:
            spool.unlink(missing_ok=True)
            raise ImageUnavailable(
                f"what it sent ({size} bytes, sha256:{sha256}) is not the image "
                f"({holder.size} bytes): discarded"
            )
        # The store a publish uses: checked against the digest, moved in, never written again.
        attachment = Attachment(digest, "application/octet-stream", spool, size, sha256)
        self._images.store(attachment, digest)
        self.fetched += 1
        self.fetched_bytes += size
        log.info(
            "fetched image sha256:%s (%d bytes) from %s in %.2f s",
            digest,
            size,
            holder.url,
            asyncio.get_running_loop().time() - started,
        )
        return size

    def _recorded(self, change: Callable[[], None]) -> None:
        """A change to the holders' rows that the image in hand does not wait for: while the
        registry cannot be reached it is logged (this SP's start writes its rows again)."""
        try:
            change()
        except DynasoarError as exc:
            log.warning("image holders not updated: %s", exc.reason)

    def close(self) -> None:
        self._flight.cancel_all()

    # -- serving what this SP holds ----------------------------------------------------------

    async def serve(self, request: Request) -> Response:
        """``GET /dynasoar/images/sha256:HEX`` from a peer sharing the registry."""
        if request.method != "GET":
            return Response.text(405, f"{IMAGES_PATH}sha256:HEX is read-only: GET it")
        found = _DIGEST.match(request.path[len(IMAGES_PATH) :])
        if found is None:
            return Response.text(404, f"name an image as {IMAGES_PATH}sha256:HEX (lower-case)")
        digest = found.group(1)
        refused = self._holders.verify(digest, request.headers.get(AUTH_HEADER))
        if refused is not None:
            client = request.client[0] if request.client else "?"
            log.warning("image sha256:%s refused to %s: %s", digest, client, refused)
            return Response.text(
                403, f"only Service Providers sharing this registry read its images: {refused}"
            )
        path = self._images.path(digest)
        try:
            file = path.open("rb")
        except FileNotFoundError:
            self._recorded(partial(self._holders.drop, digest, self._holders.url))  # say so
            return Response.text(404, f"sha256:{digest} is not held here")
        size = path.stat().st_size
        self._images.touch(digest)
        return Response(
            200,
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))],
            _chunks(file),
        )


async def _chunks(file: BinaryIO) -> AsyncIterator[bytes]:
    """A file's content, a chunk at a time, read off the event loop; closed at the end, or
    when the connection goes first."""
    try:
        while chunk := await asyncio.to_thread(file.read, CHUNK):
            yield chunk
    finally:
        file.close()


async def _receive(body: AsyncIterator[bytes], spool: Path, limit: int) -> tuple[int, str]:
    """A body written to ``spool`` and hashed as it comes; (its size, its SHA-256). Raises
    when it grows over ``limit`` bytes, before writing more."""
    digest = hashlib.sha256()
    size = 0
    pending = bytearray()
    with spool.open("wb") as out:

        def flush(data: bytes) -> None:  # hashing and writing off the event loop
            digest.update(data)
            out.write(data)

        async for chunk in body:
            size += len(chunk)
            if size > limit:
                raise ImageUnavailable(f"it sent more than the image's {limit} bytes: discarded")
            pending += chunk
            if len(pending) >= CHUNK:
                await asyncio.to_thread(flush, bytes(pending))
                pending.clear()
        if pending:
            await asyncio.to_thread(flush, bytes(pending))
    return size, digest.hexdigest()
