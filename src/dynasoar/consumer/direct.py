"""The consumer as its own Service Provider: ship a package from disk straight to a Host
Provider and get the endpoint back (``dynasoar deploy PACKAGE --hp URL``), undeploy it, or ask
the host how it is and which VM snapshots it keeps."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from dynasoar.consumer.host_client import (
    HostClient,
    HostStatus,
    PackageShipment,
    ShippedImage,
    normalize,
)
from dynasoar.consumer.publish import prepare
from dynasoar.http import ConnectionPool
from dynasoar.images import sha256_file
from dynasoar.snapshots import Snapshot
from dynasoar.soap.client import SoapClient
from dynasoar.tls import client_context

T = TypeVar("T")


def deploy(
    package: Path,
    host: str,
    timeout: float = 180.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[str, str]:
    """(deployment id, endpoint) of ``package`` deployed on ``host``; ``on_progress`` hears
    of the bytes sent (sent, total)."""
    with tempfile.TemporaryDirectory(prefix="dynasoar-deploy-") as tmp:
        upload = prepare(package, Path(tmp))
        assert upload.manifest is not None
        manifest = upload.manifest

        async def ship(client: HostClient) -> tuple[str, str]:
            digests = [ref.sha256 for ref, _ in upload.images]
            held = await client.query_images(host, digests, timeout) if digests else set()
            shipment = PackageShipment(
                service=manifest.name,
                version=manifest.version,
                kind=manifest.kind,
                stateless=manifest.stateless,
                path=upload.archive,
                sha256=sha256_file(upload.archive),
                images=tuple(
                    ShippedImage(ref, None if ref.sha256 in held else path)
                    for ref, path in upload.images
                ),
            )
            return await client.deploy(host, shipment, timeout, on_progress=on_progress)

        return asyncio.run(_with_client(ship))


def ship(host: str, shipment: PackageShipment, timeout: float = 180.0) -> tuple[str, str]:
    """(deployment id, endpoint) of a package already packed (``shipment``) deployed on
    ``host``, images and all, without asking what the host holds."""

    async def send(client: HostClient) -> tuple[str, str]:
        return await client.deploy(host, shipment, timeout)

    return asyncio.run(_with_client(send))


def undeploy(deployment_id: str, host: str, timeout: float = 60.0) -> bool:
    async def stop(client: HostClient) -> bool:
        return await client.undeploy(normalize(host), deployment_id, timeout)

    return asyncio.run(_with_client(stop))


def status(host: str, timeout: float = 30.0) -> HostStatus:
    """What ``host`` says of itself now (Status: capacity, load, cache, snapshots)."""

    async def ask(client: HostClient) -> HostStatus:
        return await client.status(normalize(host), timeout)

    return asyncio.run(_with_client(ask))


def snapshots(host: str, timeout: float = 30.0) -> list[Snapshot]:
    """The VM snapshots ``host`` keeps (asked of the host itself: QueryImages)."""

    async def ask(client: HostClient) -> list[Snapshot]:
        _, kept = await client.query_cache(normalize(host), [], timeout)
        return kept

    return asyncio.run(_with_client(ask))


async def _with_client(work: Callable[[HostClient], Awaitable[T]]) -> T:
    pool = ConnectionPool(ssl_context=client_context(None))
    try:
        return await work(HostClient(SoapClient(pool)))
    finally:
        await pool.close()
