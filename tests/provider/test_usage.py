"""Which hosts the usage book asks for their figures (``Usage.owed``), on a real registry: those
up or draining that hold a deployment, or held one (or served a message) since they were last
asked; a host that cannot be asked stays owed until it is."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dynasoar.consumer.host_client import DeploymentUsage, HostClient
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
