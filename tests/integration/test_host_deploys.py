"""A Host Provider's side of leaving no orphans: a Deploy runs under the id its requester chose
(and names its owner, shown by List), an Undeploy of a deployment still starting undoes it once
started, and a Deploy whose requester left before the reply is undone."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynasoar.errors import DeploymentFailed, DynasoarError, TransportError
from dynasoar.procs import Actor, start_actor

from .conftest import make_package, wait_for
from .hosted import deploy_directly, hosted
from .test_crash import slow_echo


@pytest.fixture
def hp(tmp_path: Path) -> Iterator[Actor]:
    args = ["--port", "0", "--data", str(tmp_path / "hp")]
    with start_actor("hp", args, tmp_path / "hp.log") as actor:
        yield actor


def test_a_deploy_runs_under_the_id_and_owner_its_requester_chose(
    hp: Actor, tmp_path: Path
) -> None:
    echo = make_package(tmp_path)
    assert deploy_directly(hp.url, echo, tmp_path / "a", "chosen-id-1", "urn:uuid:sp") == (
        "chosen-id-1"
    )
    listed = hosted(hp.url)["chosen-id-1"]
    assert (listed["owner"], listed["state"], listed["service"]) == ("urn:uuid:sp", "ready", "Echo")
    with pytest.raises(DeploymentFailed, match="exists here already"):
        deploy_directly(hp.url, echo, tmp_path / "b", "chosen-id-1", "urn:uuid:sp")
    with pytest.raises(DeploymentFailed, match="use letters, digits"):
        deploy_directly(hp.url, echo, tmp_path / "c", "../escape", "urn:uuid:sp")
    assert set(hosted(hp.url)) == {"chosen-id-1"}


def test_an_undeploy_of_a_starting_deployment_undoes_it_once_started(
    hp: Actor, tmp_path: Path
) -> None:
    from dynasoar.consumer import direct

    package = slow_echo(tmp_path, 2.0)
    failure: list[BaseException] = []

    def deploy() -> None:
        try:
            deploy_directly(hp.url, package, tmp_path / "a", "starting-1", "urn:uuid:sp")
        except DynasoarError as exc:
            failure.append(exc)

    thread = threading.Thread(target=deploy)
    thread.start()
    wait_for(lambda: "starting-1" in hosted(hp.url), what="the deploy to start")
    assert hosted(hp.url)["starting-1"]["state"] == "starting"
    assert direct.undeploy("starting-1", hp.url)
    assert "starting-1" not in hosted(hp.url)  # no longer listed: it will not run
    thread.join(timeout=60)
    (error,) = failure
    assert isinstance(error, DeploymentFailed) and "undeployed while it started" in str(error)
    assert hosted(hp.url) == {}


def test_a_deploy_whose_requester_left_is_undone(hp: Actor, tmp_path: Path) -> None:
    from dynasoar.consumer.host_client import HostClient, PackageShipment
    from dynasoar.consumer.publish import prepare
    from dynasoar.http import ConnectionPool
    from dynasoar.images import sha256_file
    from dynasoar.soap.client import SoapClient

    upload = prepare(slow_echo(tmp_path, 2.0), tmp_path / "scratch")
    assert upload.manifest is not None
    shipment = PackageShipment(
        "SlowEcho", "1.0", "code", True, upload.archive, sha256_file(upload.archive)
    )

    async def give_up_early() -> None:
        pool = ConnectionPool()
        try:
            client = HostClient(SoapClient(pool))
            with pytest.raises((TransportError, DeploymentFailed)):
                # Gives up (and closes its connection) long before the service has started.
                await client.deploy(hp.url, shipment, 0.8, deployment_id="left-1", owner="x")
        finally:
            await pool.close()

    asyncio.run(give_up_early())
    assert "left-1" in hosted(hp.url)  # still starting
    wait_for(lambda: "left-1" not in hosted(hp.url), what="the deploy to be undone")
    time.sleep(0.5)
    assert hosted(hp.url) == {}
    assert "the requester left before the reply; undoing" in hp.log()
