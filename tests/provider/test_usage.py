"""Which hosts the usage book asks for their figures (``Usage.owed``), on a real registry: those
up or draining that hold a deployment, or held one (or served a message) since they were last
asked; a host that cannot be asked, or whose figures the registry failed to take, stays owed
until they are taken."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from echo_package import echo_upload

from dynasoar.consumer.host_client import DeploymentUsage, HostClient, PackageShipment
from dynasoar.http import ConnectionPool
from dynasoar.images import sha256_file
from dynasoar.pgserver import PostgresServer
from dynasoar.procs import start_actor
from dynasoar.provider.postgres import RETRY_SECONDS
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


def _used(deployment_id: str, cpu: float) -> DeploymentUsage:
    """A host's report of a deployment's figures so far (cumulative, as GetUsage gives them)."""
    return DeploymentUsage(deployment_id, "Echo", "1.0", "running", cpu, cpu / 10, 0)


def _billed_cpu(registry: Registry) -> float:
    return sum(row.tally.cpu_seconds for row in Usage(registry, _client()).bill())


def _client() -> HostClient:
    return HostClient(SoapClient(ConnectionPool()))


def test_an_increase_another_sp_takes_first_is_not_taken_again(pg_url: str) -> None:
    # Two SPs read the same host's figures at the same moment: B takes the increase between
    # A's read of what was taken before and A's write. A must then take nothing of it.
    a_registry, b_registry = Registry(pg_url), Registry(pg_url)
    try:
        a_registry.put_host(host("http://h"))
        a_registry.add_deployment(deployment("d1", "http://h"))
        a, b = Usage(a_registry, _client()), Usage(b_registry, _client())
        a._figures("http://h", _used("d1", 1.0))
        a.flush()
        reads = 0
        query = a_registry.query

        def read_then_b_takes(sql: str, args: tuple[object, ...] = ()) -> list[object]:
            nonlocal reads
            rows = query(sql, args)
            if "FROM deployment_usage" in sql:
                reads += 1
                if reads == 1:
                    b._figures("http://h", _used("d1", 3.0))
                    b.flush()
            return rows

        a_registry.query = read_then_b_takes  # type: ignore[method-assign]
        a._figures("http://h", _used("d1", 3.0))
        a.flush()
        assert reads == 2  # A lost the compare-and-set and read again
        assert _billed_cpu(a_registry) == 3.0  # not 5.0: the increase of 2 s billed once
    finally:
        a_registry.close()
        b_registry.close()


def test_sps_taking_one_host_s_figures_at_once_bill_each_second_once(pg_url: str) -> None:
    # Two SPs, each polling the same deployment from its own thread as its figures grow:
    # whatever the interleaving, the bill holds the host's last figure, no more.
    registries = [Registry(pg_url), Registry(pg_url)]
    try:
        registries[0].put_host(host("http://h"))
        registries[0].add_deployment(deployment("d1", "http://h"))
        books = [Usage(r, _client()) for r in registries]

        def poll(book: Usage) -> None:
            for step in range(1, 101):
                book._figures("http://h", _used("d1", float(step)))
                book.flush()

        threads = [threading.Thread(target=poll, args=(book,)) for book in books]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert _billed_cpu(registries[0]) == pytest.approx(100.0)
    finally:
        for registry in registries:
            registry.close()


def test_the_cpu_is_shared_by_the_messages_every_sp_relayed(pg_url: str) -> None:
    # Only the leader asks hosts for their figures; consumers served through another SP
    # must get their share all the same (each SP writes its wall times with its chores).
    leader, other = Registry(pg_url), Registry(pg_url)
    try:
        leader.put_host(host("http://h"))
        d1 = deployment("d1", "http://h")
        leader.add_deployment(d1)
        taking, relaying = Usage(leader, _client()), Usage(other, _client())
        taking.message("alice", d1, 100, 100, 1.0)
        relaying.message("bob", d1, 100, 100, 3.0)
        relaying.flush()  # the other SP's chore, once a second
        taking.flush()  # as poll does before it takes
        taking._figures("http://h", _used("d1", 8.0))
        taking.flush()
        cpu = {row.key.consumer: row.tally.cpu_seconds for row in taking.bill()}
        assert cpu == {"alice": pytest.approx(2.0), "bob": pytest.approx(6.0)}

        # What came after the take is the next increase's to share, and only that.
        relaying.message("bob", d1, 100, 100, 1.0)
        relaying.flush()
        taking._figures("http://h", _used("d1", 10.0))
        taking.flush()
        cpu = {row.key.consumer: row.tally.cpu_seconds for row in taking.bill()}
        assert cpu == {"alice": pytest.approx(2.0), "bob": pytest.approx(8.0)}
    finally:
        leader.close()
        other.close()


async def _deploy_echo(client: HostClient, hp: str, scratch: Path, deployment_id: str) -> None:
    """The sample Echo deployed on ``hp`` directly, under ``deployment_id``."""
    upload = echo_upload(scratch)
    assert upload.manifest is not None
    shipment = PackageShipment(
        service=upload.manifest.name,
        version=upload.manifest.version,
        kind=upload.manifest.kind,
        stateless=upload.manifest.stateless,
        path=upload.archive,
        sha256=sha256_file(upload.archive),
    )
    await client.deploy(hp, shipment, 120, deployment_id=deployment_id, owner="urn:uuid:sp")


def test_an_ended_deployment_s_figures_are_billed_after_a_poll_the_registry_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A deployment ended: only the SP's memory says its host still holds final figures. The
    # registry goes away while they are being taken; once it is back, the next poll takes them.
    server = PostgresServer.create()  # its own: this test stops it
    hp = start_actor("hp", ["--port", "0", "--data", str(tmp_path / "hp")], tmp_path / "hp.log")
    registry = Registry(server.url)

    async def scenario() -> tuple[float, float]:
        pool = ConnectionPool()
        try:
            client = HostClient(SoapClient(pool))
            usage = Usage(registry, client, timeout=30.0)
            await _deploy_echo(client, hp.url, tmp_path, "d1")
            registry.put_host(host(hp.url))
            registry.add_deployment(deployment("d1", hp.url))
            await client.undeploy(hp.url, "d1", timeout=30.0)
            registry.remove_deployment("d1")  # gone: its host keeps its final figures
            assert usage.owed() == [hp.url]

            query = registry.query

            def server_stops_as_figures_are_read(
                sql: str, args: tuple[object, ...] = ()
            ) -> list[object]:
                if "FROM deployment_usage" in sql and server.running():
                    server.stop()  # after the host answered, before its figures are taken
                return query(sql, args)

            registry.query = server_stops_as_figures_are_read  # type: ignore[method-assign]
            await usage.poll(usage.owed())  # neither raises nor forgets the host
            registry.query = query  # type: ignore[method-assign]
            assert usage.owed() == [hp.url]

            server.start()
            time.sleep(RETRY_SECONDS)
            await usage.poll(usage.owed())
            assert usage.owed() == []  # taken: asked no more
            [final] = [u for u in await client.usage(hp.url, timeout=30.0) if u.id == "d1"]
            assert final.state == "ended"
            return sum(row.tally.cpu_seconds for row in usage.bill()), final.cpu_seconds
        finally:
            await pool.close()

    try:
        with caplog.at_level(logging.WARNING, logger="dynasoar.provider.usage"):
            billed, consumed = asyncio.run(scenario())
        assert consumed > 0
        assert billed == pytest.approx(consumed)
        said = [r for r in caplog.records if r.name == "dynasoar.provider.usage"]
        assert [r.getMessage()[:50] for r in said] == [
            "the usage of 1 host(s) was not taken (the registry"
        ]
        assert said[0].exc_info is None  # logged once, no traceback
    finally:
        registry.close()
        hp.stop()
        server.destroy()


def test_what_was_taken_of_a_deployment_its_host_forgot_is_forgotten(tmp_path: Path) -> None:
    # The ledger of what was taken keeps a row per deployment while its host can report it:
    # here the host restarts (it forgets the ended deployment's final figures), and the row
    # goes, once old enough; a row the registry still holds a deployment for stays.
    data = tmp_path / "hp"
    hp = start_actor("hp", ["--port", "0", "--data", str(data)], tmp_path / "hp.log")
    registry = Registry(tmp_path / "registry.sqlite")

    def ledger() -> list[str]:
        return sorted(str(r[0]) for r in registry.query("SELECT id FROM deployment_usage"))

    async def scenario() -> None:
        nonlocal hp
        pool = ConnectionPool()
        try:
            client = HostClient(SoapClient(pool))
            registry.put_host(host(hp.url))
            for name in ("ended", "running"):
                await _deploy_echo(client, hp.url, tmp_path / name, name)
                registry.add_deployment(deployment(name, hp.url))
            keep = Usage(registry, client, timeout=30.0)  # rows forgotten after an hour
            prune = Usage(registry, client, timeout=30.0, prune_after=0.0)
            await prune.poll([hp.url])
            assert ledger() == ["ended", "running"]

            await client.undeploy(hp.url, "ended", timeout=30.0)
            registry.remove_deployment("ended")
            await prune.poll([hp.url])
            assert ledger() == ["ended", "running"]  # its host still reports it (ended)

            port = hp.url.rpartition(":")[2]
            hp.stop()  # the running deployment goes with its host; the registry keeps it
            hp = start_actor("hp", ["--port", port, "--data", str(data)], tmp_path / "hp.log")
            reported = {u.id for u in await client.usage(hp.url, timeout=30.0)}
            assert "ended" not in reported and "running" not in reported
            await keep.poll([hp.url])
            assert ledger() == ["ended", "running"]  # taken less than an hour ago
            await prune.poll([hp.url])
            assert ledger() == ["running"]  # the registry holds it still: it may come back
        finally:
            await pool.close()

    try:
        asyncio.run(scenario())
    finally:
        registry.close()
        hp.stop()
