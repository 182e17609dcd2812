"""The shipper's last word before a deployment is recorded ready (``Shipper.ship``'s ``admit``),
with a real Host Provider: a deployment whose reason went meanwhile (a move another SP settled)
is undeployed again and never recorded ready, so that no SP sends it a message."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from echo_package import echo_upload

from dynasoar.consumer.host_client import HostClient
from dynasoar.errors import DeploymentFailed
from dynasoar.http import ConnectionPool
from dynasoar.images import ImageCache, sha256_file
from dynasoar.procs import start_actor
from dynasoar.provider.registry import Registry, ServiceRecord
from dynasoar.provider.shipper import Shipper
from dynasoar.soap.client import SoapClient


def _echo(scratch: Path) -> ServiceRecord:
    upload = echo_upload(scratch)
    assert upload.manifest is not None
    return ServiceRecord(
        upload.manifest.name,
        upload.manifest.version,
        upload.manifest.kind,
        upload.manifest.stateless,
        sha256_file(upload.archive),
        upload.archive.stat().st_size,
        datetime.now(UTC),
        str(upload.archive),
        b"",
    )


def test_a_deployment_not_admitted_is_undeployed_and_never_recorded_ready(
    tmp_path: Path,
) -> None:
    hp = start_actor("hp", ["--port", "0", "--data", str(tmp_path / "hp")], tmp_path / "hp.log")
    registry = Registry(tmp_path / "registry.sqlite")

    async def scenario() -> tuple[list[str], list[dict[str, str]]]:
        pool = ConnectionPool()
        client = HostClient(SoapClient(pool))
        shipper = Shipper(registry, client, pool, ImageCache(tmp_path / "images"), 60.0)
        asked: list[str] = []

        def admit() -> bool:
            # Asked once the deployment answers, before it is recorded ready.
            asked.extend(r.state for r in registry.deployments())
            return False

        try:
            service = _echo(tmp_path)
            with pytest.raises(DeploymentFailed, match="undeployed again"):
                await shipper.ship(hp.url, service, admit=admit)
            deadline = time.monotonic() + 30
            listed = await client.list_deployments(hp.url, timeout=10.0)
            while listed and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                listed = await client.list_deployments(hp.url, timeout=10.0)
            admitted = await shipper.ship(hp.url, service, admit=lambda: True)
            assert admitted.state == "ready"
            return asked, listed
        finally:
            await shipper.close()
            await pool.close()

    try:
        asked, listed = asyncio.run(scenario())
        assert asked == ["deploying"]  # what the other SPs could see: never "ready"
        assert listed == []  # the host undeployed it
        assert [r.state for r in registry.deployments()] == ["ready"]  # the admitted one only
    finally:
        registry.close()
        hp.stop()
