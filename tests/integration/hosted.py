"""What a Host Provider says it runs (its ``List``), and deploying on one directly, for tests
that check the registry and the hosts agree."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from dynasoar.consumer.host_client import DeploymentUsage, HostClient, PackageShipment
from dynasoar.consumer.publish import prepare
from dynasoar.http import ConnectionPool
from dynasoar.images import sha256_file
from dynasoar.soap.client import SoapClient

T = TypeVar("T")


def with_host_client(work: Callable[[HostClient], Awaitable[T]]) -> T:
    async def run() -> T:
        pool = ConnectionPool()
        try:
            return await work(HostClient(SoapClient(pool)))
        finally:
            await pool.close()

    return asyncio.run(run())


def hosted(hp: str) -> dict[str, dict[str, str]]:
    """The host's deployments (starting ones too), by id."""
    listed = with_host_client(lambda client: client.list_deployments(hp, timeout=30))
    return {item["id"]: item for item in listed}


def host_usage(hp: str) -> list[DeploymentUsage]:
    """What the host says its deployments consumed."""
    return with_host_client(lambda client: client.usage(hp, timeout=30))


def deploy_directly(
    hp: str, package: Path, scratch: Path, deployment_id: str, owner: str | None
) -> str:
    """Deploy ``package`` on ``hp`` with no SP involved, under the given id and owner."""
    upload = prepare(package, scratch)
    assert upload.manifest is not None
    shipment = PackageShipment(
        service=upload.manifest.name,
        version=upload.manifest.version,
        kind=upload.manifest.kind,
        stateless=upload.manifest.stateless,
        path=upload.archive,
        sha256=sha256_file(upload.archive),
    )
    deployed = with_host_client(
        lambda client: client.deploy(hp, shipment, 120, deployment_id=deployment_id, owner=owner)
    )
    return deployed[0]


def sp_identity(sp_data: Path) -> str:
    """The identity an SP tells hosts with every Deploy (kept in its registry)."""
    with sqlite3.connect(sp_data / "registry.sqlite") as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
    return str(row[0])
