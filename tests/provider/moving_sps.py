"""Two SPs' sides of a move on one real registry, for the tests of the moves SPs make and watch
(test_move_watch, test_move_fence): each SP's deployer with a real shipper and host client, its
gates and load, what settles a dead mover's moves, and its watch of the others' moves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dynasoar.consumer.host_client import HostClient
from dynasoar.deadlines import Deadlines
from dynasoar.http import ConnectionPool
from dynasoar.images import ImageCache
from dynasoar.provider.deployer import Deployer
from dynasoar.provider.gates import MoveGate
from dynasoar.provider.hosts import HostDirectory
from dynasoar.provider.load import LoadTracker
from dynasoar.provider.move_recovery import MoveRecovery
from dynasoar.provider.move_watch import MoveWatch
from dynasoar.provider.registry import DeploymentRecord, Registry, ServiceRecord
from dynasoar.provider.shipper import Shipper
from dynasoar.soap.client import SoapClient

#: Nothing listens here: a host asked there fails at once (a refused connection).
NOWHERE = "http://127.0.0.1:1"


def record(deployment_id: str, host: str) -> DeploymentRecord:
    return DeploymentRecord(
        deployment_id,
        "VmCounter",
        "1.0",
        host,
        f"{host}/svc/{deployment_id}",
        "ready",
        datetime.now(UTC),
    )


def counter() -> ServiceRecord:
    return ServiceRecord(
        "VmCounter", "1.0", "vm", False, "0" * 64, 1, datetime.now(UTC), "/nowhere", b""
    )


@dataclass
class Sp:
    """One SP's side of the moves: its deployer (real shipper and host client, its gates and
    load), what settles a dead mover's moves, and its watch of the others' moves."""

    deployer: Deployer
    recovery: MoveRecovery
    watch: MoveWatch
    hosts: HostDirectory
    client: HostClient


@asynccontextmanager
async def sp(registry: Registry, tmp: Path) -> AsyncIterator[Sp]:
    pool = ConnectionPool()
    client = HostClient(SoapClient(pool))
    shipper = Shipper(registry, client, pool, ImageCache(tmp / registry.instance), 30.0)
    hosts = HostDirectory(registry, client)
    deployer = Deployer(registry, hosts, shipper, LoadTracker(), Deadlines())
    recovery = MoveRecovery(registry, deployer, client)
    loop = asyncio.get_running_loop()
    watch = MoveWatch(registry, deployer.gates, deployer.load, loop, recovery)
    try:
        yield Sp(deployer, recovery, watch, hosts, client)
    finally:
        await watch.close()
        await shipper.close()
        await pool.close()


def closed_gate(side: Sp, deployment_id: str) -> MoveGate:
    gate = side.deployer.gates.get(deployment_id)
    assert gate is not None and not gate.is_open
    return gate



def published(pg_url: str) -> Registry:
    """The mover's registry, alive, with the stateful VmCounter published and deployed (at a
    host that cannot be reached: asking it to resume the guest fails)."""
    mover = Registry(pg_url)
    mover.hold_instance()
    mover.put_version(counter())
    mover.set_route("VmCounter", (("1.0", 100),))
    mover.add_deployment(record("old", NOWHERE))
    return mover


