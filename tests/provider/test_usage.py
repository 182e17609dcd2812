"""Which hosts the usage book asks for their figures (``Usage.owed``), on a real registry: those
up or draining that hold a deployment, or held one (or served a message) since they were last
asked; a host that cannot be asked stays owed until it is."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from dynasoar.consumer.host_client import HostClient
from dynasoar.http import ConnectionPool
from dynasoar.provider.registry import DeploymentRecord, HostRecord, Registry
from dynasoar.provider.usage import Usage
from dynasoar.soap.client import SoapClient

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
#: Nothing listens here: asking it fails at once (a refused connection).
NOWHERE = "http://127.0.0.1:1"


def host(address: str, state: str = "up") -> HostRecord:
    return HostRecord(address, state, 4, 0, 0.0, T0)


def deployment(deployment_id: str, on: str) -> DeploymentRecord:
    return DeploymentRecord(deployment_id, "Echo", "1.0", on, f"{on}/svc", "ready", T0)


def test_only_hosts_with_figures_to_take_are_owed(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.sqlite")
    try:
        for address, state in [("http://a", "up"), ("http://b", "up"), ("http://c", "up"),
                               ("http://d", "down"), ("http://e", "draining")]:
            registry.put_host(host(address, state))
        usage = Usage(registry, HostClient(SoapClient(ConnectionPool())))
        assert usage.owed() == []  # five hosts, none holding anything

        registry.add_deployment(deployment("on-a", "http://a"))
        registry.add_deployment(deployment("on-b", "http://b"))
        registry.add_deployment(deployment("on-d", "http://d"))  # lost with its host
        assert usage.owed() == ["http://a", "http://b"]  # d cannot be asked now

        usage.message("alice", deployment("on-e", "http://e"), 10, 10, 0.01)  # served here
        registry.remove_deployment("on-b")  # ended: b keeps its final figures
        assert usage.owed() == ["http://a", "http://b", "http://e"]

        registry.remove_deployment("on-d")
        assert "http://d" not in usage.owed()
        registry.set_host_state("http://d", "up")  # back: its ended deployment's figures
        assert "http://d" in usage.owed()
    finally:
        registry.close()


def test_a_host_that_does_not_answer_stays_owed(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.sqlite")
    try:
        registry.put_host(host(NOWHERE))
        registry.add_deployment(deployment("d1", NOWHERE))

        async def poll() -> None:
            pool = ConnectionPool()
            try:
                usage = Usage(registry, HostClient(SoapClient(pool)), timeout=5.0)
                registry.remove_deployment("d1")
                assert usage.owed() == [NOWHERE]
                await usage.poll(usage.owed())  # refused
                assert usage.owed() == [NOWHERE]  # still to be taken
            finally:
                await pool.close()

        asyncio.run(poll())
    finally:
        registry.close()
