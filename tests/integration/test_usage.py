"""Usage and the bill: every message counted for its consumer (here, as it says it: dyn:Consumer;
or its address when it names none) with its bytes and wall time; each host's report of what its
deployments consumed (CPU seconds, as the service process's own accounting says, within 10 %);
priced at the host's terms; kept across an SP restart; and printed by ``dynasoar usage`` (for
one consumer, or from a day on)."""

from __future__ import annotations

import csv
import datetime
import io
import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from dynasoar.bench.cluster import cpu_seconds, pid_of_deployment
from dynasoar.paths import samples_dir

from .conftest import Cluster
from .wire import ECHO_NS, envelope, post

MakeCluster = Callable[..., Cluster]


def compute_as(consumer: str, millis: int) -> bytes:
    return envelope(
        f'<e:Compute xmlns:e="{ECHO_NS}"><e:millis>{millis}</e:millis></e:Compute>',
        headers=f'<dyn:Consumer xmlns:dyn="urn:dynasoar:2006">{consumer}</dyn:Consumer>',
    )


def usage_cli(sp: str, *args: str) -> str:
    """What ``dynasoar usage ARGS`` prints, asking ``sp``."""
    return subprocess.run(
        [sys.executable, "-m", "dynasoar", "usage", *args, "--sp", sp],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


def by_consumer(rows: list[object]) -> dict[str, dict[str, float]]:
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        for name in ("messages", "bytesIn", "bytesOut", "cpuSeconds", "cost"):
            totals[row.consumer][name] += getattr(row, name)  # type: ignore[attr-defined]
    return totals


def test_usage_per_consumer_matches_the_calls_and_survives_a_restart(
    make_cluster: MakeCluster,
) -> None:
    c = make_cluster(
        sp_args=["--reconcile-interval", "1"], hps=[["--price", "0.5", "--price-gib", "2"]]
    )
    c.client.publish(samples_dir() / "echo")
    url = c.service_url("Echo")
    sent: dict[str, dict[str, int]] = {
        name: {"messages": 0, "in": 0, "out": 0} for name in ("alice", "bob")
    }
    deployment = ""
    for i in range(1000):
        consumer = "alice" if i % 5 < 3 else "bob"  # 600 and 400
        body = compute_as(consumer, 5)
        reply = post(url, body, soap_action=f"{ECHO_NS}/Compute")
        assert reply.status == 200
        deployment = reply.headers["x-dynasoar-deployment"]
        sent[consumer]["messages"] += 1
        sent[consumer]["in"] += len(body)
        sent[consumer]["out"] += len(reply.body)

    rows = c.client.call("GetUsage")
    measured = cpu_seconds(pid_of_deployment(deployment))
    book = by_consumer(rows)
    for consumer, mine in sent.items():
        assert book[consumer]["messages"] == mine["messages"]
        assert book[consumer]["bytesIn"] == pytest.approx(mine["in"], rel=0.01)
        assert book[consumer]["bytesOut"] == pytest.approx(mine["out"], rel=0.01)
    counted = sum(totals["cpuSeconds"] for totals in book.values())
    assert counted == pytest.approx(measured, rel=0.10)
    for row in rows:  # priced at the host's terms
        gib = (row.bytesIn + row.bytesOut + row.imageBytes) / (1 << 30)
        assert (row.priceCpu, row.priceGiB) == (0.5, 2.0)
        assert row.cost == pytest.approx(row.cpuSeconds * 0.5 + gib * 2.0, rel=1e-6, abs=1e-9)

    c.sp.stop()
    c.start_sp()
    after = by_consumer(c.client.call("GetUsage"))
    for consumer, mine in sent.items():
        assert after[consumer]["messages"] == mine["messages"]
        assert after[consumer]["bytesIn"] == book[consumer]["bytesIn"]
        assert after[consumer]["cpuSeconds"] >= book[consumer]["cpuSeconds"] * 0.999

    out = usage_cli(c.sp.url, "--csv")
    lines = list(csv.DictReader(io.StringIO(out)))
    assert {line["consumer"] for line in lines} == {"alice", "bob"}
    assert sum(int(line["messages"]) for line in lines if line["consumer"] == "bob") == 400
    only = usage_cli(c.sp.url, "--consumer", "alice", "--json")
    assert {row["consumer"] for row in json.loads(only)} == {"alice"}
    table = usage_cli(c.sp.url)
    assert "total for alice:" in table and "total for bob:" in table

    # A message that names no consumer (and is not signed) is counted for its address; the
    # book is kept per day, and --since leaves out the days before the one it names.
    for _ in range(3):
        reply = post(url, envelope(f'<e:Echo xmlns:e="{ECHO_NS}"><e:text>x</e:text></e:Echo>'))
        assert reply.status == 200
    anonymous = by_consumer(c.client.call("GetUsage"))
    assert anonymous["127.0.0.1"]["messages"] == 3

    def since(day: datetime.date) -> set[str]:
        printed = usage_cli(c.sp.url, "--json", "--since", day.isoformat())
        return {row["consumer"] for row in json.loads(printed)}

    today = datetime.datetime.now(datetime.UTC).date()
    assert since(today - datetime.timedelta(days=1)) == {"alice", "bob", "127.0.0.1"}
    assert since(today + datetime.timedelta(days=1)) == set()


def test_a_guests_consumption_is_reported_by_its_host(make_cluster: MakeCluster) -> None:
    from dynasoar.consumer.call import call

    from .hosted import host_usage
    from .test_vm_images import FULL

    if not (FULL / "dynasoar.toml").is_file():
        pytest.fail("the vm-echo image is not built: `make vm-image` (make test does it)")
    c = make_cluster(hps=[["--backend", "libvirt"]])
    c.client.publish(FULL)
    reply = call(c.service_url("VmEcho") + "?wsdl", "Echo", ["text=metered"])
    (guest,) = host_usage(c.hps[0].url)
    assert guest.id == reply.headers["x-dynasoar-deployment"]
    assert guest.state == "running"
    assert guest.cpu_seconds > 0.5  # it booted: seconds of emulated CPU
    assert guest.image_bytes > 1 << 20  # its images came with the Deploy
    c.client.call("Undeploy", name="VmEcho")
    (ended,) = host_usage(c.hps[0].url)
    assert ended.state == "ended" and ended.memory_gib_seconds > 0


def host_cpu(rows: list[object], host: str) -> float:
    return sum(r.cpuSeconds for r in rows if r.host == host)  # type: ignore[attr-defined]


def test_a_deployment_undeployed_just_before_get_usage_is_billed_in_full(
    make_cluster: MakeCluster,
) -> None:
    """GetUsage asks only the hosts that can have figures not yet taken: a host whose only
    deployment was undeployed since it was last asked is one of them. Its whole consumption
    is billed, as the host itself reports it, and asking again adds nothing."""
    from .hosted import host_usage

    # the control loop takes no figures of its own meanwhile: only GetUsage does
    c = make_cluster(sp_args=["--reconcile-interval", "3600"])
    first, second = (hp.url for hp in c.hps)
    c.client.publish(samples_dir() / "echo")
    c.client.call("Deploy", name="Echo", host=first)
    url = c.service_url("Echo")
    for _ in range(200):
        assert post(url, compute_as("alice", 5), soap_action=f"{ECHO_NS}/Compute").status == 200
    taken = c.client.call("GetUsage")
    assert host_cpu(taken, first) > 0 and host_cpu(taken, second) == 0
    # A replica on the second host, never sent a message: its start is its whole consumption.
    c.client.call("Deploy", name="Echo", host=second)
    assert c.client.call("Undeploy", name="Echo") == 2
    ended = {hp: host_usage(hp) for hp in (first, second)}
    assert all(d.state == "ended" for figures in ended.values() for d in figures)

    rows = c.client.call("GetUsage")
    for hp, figures in ended.items():
        reported = sum(d.cpu_seconds for d in figures)
        assert host_cpu(rows, hp) == pytest.approx(reported, rel=1e-9, abs=1e-9), hp
    assert host_cpu(rows, second) > 0  # a Python process started there
    assert by_consumer(rows)["alice"]["messages"] == 200
    again = c.client.call("GetUsage")  # nothing new to take: the same bill
    assert [(r.host, r.consumer, r.cpuSeconds) for r in again] == [
        (r.host, r.consumer, r.cpuSeconds) for r in rows
    ]


def test_a_deployment_gone_while_its_host_stops_it_stays_owed_until_it_ended(
    tmp_path: Path,
) -> None:
    """The registry forgets a deployment before its host has stopped it (a drop, a retire):
    asked in between, the host reports it still running, and stays owed until it reports it
    ended; its final figures are billed. A real HP; the SP's usage book on a real registry."""
    import asyncio
    from datetime import UTC, datetime

    from dynasoar.consumer.host_client import HostClient
    from dynasoar.http import ConnectionPool
    from dynasoar.procs import start_actor
    from dynasoar.provider.registry import DeploymentRecord, HostRecord, Registry
    from dynasoar.provider.usage import Usage
    from dynasoar.soap.client import SoapClient

    from .hosted import deploy_directly, host_usage

    with start_actor("hp", ["--port", "0", "--data", str(tmp_path / "hp")]) as hp:
        deployment_id = deploy_directly(hp.url, samples_dir() / "echo", tmp_path, "d1", None)
        registry = Registry(tmp_path / "registry.sqlite")
        registry.put_host(HostRecord(hp.url, "up", 4, 1, 0.0, datetime.now(UTC)))
        registry.add_deployment(
            DeploymentRecord(
                deployment_id, "Echo", "1.0", hp.url, f"{hp.url}/x", "ready", datetime.now(UTC)
            )
        )

        async def book() -> tuple[list[str], list[str], float]:
            pool = ConnectionPool()
            try:
                client = HostClient(SoapClient(pool))
                usage = Usage(registry, client)
                registry.remove_deployment(deployment_id)  # forgotten; the host runs it on
                await usage.poll(usage.owed())
                still = usage.owed()
                await client.undeploy(hp.url, deployment_id, timeout=30)
                await usage.poll(usage.owed())
                billed = sum(r.tally.cpu_seconds for r in usage.bill())
                return still, usage.owed(), billed
            finally:
                await pool.close()

        try:
            still, after, billed = asyncio.run(book())
            (ended,) = host_usage(hp.url)
        finally:
            registry.close()
    assert still == [hp.url]  # reported running: its final figures are still to come
    assert after == []  # reported ended and taken
    assert ended.state == "ended"
    assert billed == pytest.approx(ended.cpu_seconds, rel=1e-9, abs=1e-9)
