"""Several SPs on one shared PostgreSQL registry, as real processes: every SP relays to every
deployment, the first calls of a service spread over two SPs make one deployment, one SP at a
time leads the control loop and another takes over when it dies, the same rollout asked of
both deploys the new version once, and a registry that cannot be
reached costs only what needs it (a new deployment: dyn:RegistryUnavailable), never a hang
and never what was known or counted."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dynasoar import ns
from dynasoar.beats import RETRY_CEILING
from dynasoar.consumer.host_client import HostClient
from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.http import ConnectionPool
from dynasoar.paths import samples_dir
from dynasoar.pgserver import PostgresServer
from dynasoar.provider.registry import Registry
from dynasoar.soap.client import SoapClient
from dynasoar.soap.envelope import SoapVersion

from .conftest import make_package, wait_for
from .grid import Grid, beats_heard, deployments, downs, hosts_up
from .wire import ECHO_ACTION, echo_body, envelope, get, post


def echo(sp_url: str, text: str, service: str = "Echo") -> str:
    reply = post(
        f"{sp_url}/services/{service}", envelope(echo_body(text)), soap_action=ECHO_ACTION
    )
    assert reply.status == 200, reply.body[:600]
    assert f"<e:text>{text}</e:text>".encode() in reply.body or text.encode() in reply.body
    return reply.headers["x-dynasoar-deployment"]


def wait_advertised(sp_url: str, service: str) -> None:
    """Until ``sp_url`` advertises ``service`` (published on another SP: the change reaches
    it through the registry)."""
    wait_for(
        lambda: get(f"{sp_url}/services/{service}?wsdl").status == 200,
        what=f"{sp_url} to advertise {service}",
    )


def hosted(hp_url: str) -> list[dict[str, str]]:
    """What a host itself says it runs (its List), asked as the SPs ask."""
    import asyncio

    async def ask() -> list[dict[str, str]]:
        pool = ConnectionPool()
        try:
            client = HostClient(SoapClient(pool, SoapVersion.SOAP12))
            return await client.list_deployments(hp_url, timeout=10.0)
        finally:
            await pool.close()

    return asyncio.run(ask())


def test_every_sp_relays_to_every_deployment(grid: Grid) -> None:
    a, b = grid.start_sp(), grid.start_sp()
    grid.add_hp(a)
    grid.add_hp(b)  # a host may register with any SP: both know it
    wait_for(lambda: len(hosts_up(a)) == 2 and len(hosts_up(b)) == 2, what="both hosts, both SPs")
    ProviderClient(a.url).publish(samples_dir() / "echo")  # published on one SP only
    wait_advertised(b.url, "Echo")
    first = echo(b.url, "via-b")  # the other deploys it: the package came through the registry
    assert echo(a.url, "via-a") == first  # and the first relays to that same deployment
    assert [d.id for d in deployments(a, "Echo")] == [first]  # type: ignore[attr-defined]


def test_first_calls_spread_over_two_sps_make_one_deployment(grid: Grid, tmp_path: Path) -> None:
    a, b = grid.start_sp(), grid.start_sp()
    for sp in (a, b, a):
        grid.add_hp(sp)
    ProviderClient(a.url).publish(make_package(tmp_path, name="Burst"))
    wait_advertised(b.url, "Burst")
    results: list[str] = []
    failures: list[str] = []
    start = threading.Barrier(200)

    def first_call(i: int) -> None:
        sp = (a, b)[i % 2]
        start.wait()
        reply = post(
            f"{sp.url}/services/Burst", envelope(echo_body(f"m{i}")), soap_action=ECHO_ACTION
        )
        if reply.status == 200:
            results.append(reply.headers["x-dynasoar-deployment"])
        else:
            failures.append(reply.body[:300].decode(errors="replace"))

    threads = [threading.Thread(target=first_call, args=(i,)) for i in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not failures, failures[:3]
    assert len(results) == 200
    assert len(set(results)) == 1, f"{len(set(results))} deployments made"
    on_hosts = [d for hp in grid.hps for d in hosted(hp.url) if d.get("service") == "Burst"]
    assert [d["id"] for d in on_hosts] == [results[0]]


def test_one_sp_leads_the_control_loop_and_another_takes_over_when_it_dies(
    grid: Grid,
) -> None:
    a = grid.start_sp("--host-timeout", "2")
    b = grid.start_sp("--host-timeout", "2")
    wait_for(lambda: grid.leader() is not None, what="a leader")
    leader = grid.leader()
    assert leader is a  # the first to start took the lead; the other waits for it
    hp1 = grid.add_hp(b, ["--heartbeat", "0.5"])
    grid.add_hp(b, ["--heartbeat", "0.5"])
    a.kill()  # SIGKILL: its database session ends, and its lock with it
    wait_for(lambda: grid.leader() is b, timeout=20, what="the survivor to take the lead")
    # The survivor now runs the control loop: a host that stops beating is judged down by it.
    hp1.kill()
    wait_for(lambda: hp1.url not in hosts_up(b), timeout=30, what="the dead host marked down")
    states = {h.address: h.state for h in ProviderClient(b.url).call("ListHosts")}
    assert states[hp1.url] == "down"
    assert states[grid.hps[1].url] == "up"



def test_the_leader_judges_a_host_that_beats_only_to_another_sp(grid: Grid) -> None:
    """A host beats only to the SP that does not lead: that SP writes its beats to the
    registry, and the leader, judging them there, keeps it up for several host timeouts; once
    the host is SIGKILLed, the leader marks it down."""
    timeout = 2.0
    started = datetime.now(UTC)
    a = grid.start_sp("--host-timeout", str(timeout))
    wait_for(lambda: grid.leader() is a, what="the first SP to lead")
    b = grid.start_sp("--host-timeout", str(timeout))
    hp = grid.add_hp(b, ["--heartbeat", "0.5"])  # --sp b: it never beats to the leader
    registered = datetime.now(UTC)
    # The leader judges a host it never heard itself once its own start is that far behind
    # (Heartbeats.judge_from), and any host a host timeout after it took the lead: wait
    # beyond both, and several host timeouts of beats.
    past = max(
        registered + timedelta(seconds=5 * timeout),
        started + timedelta(seconds=3 * timeout + RETRY_CEILING),
    )
    absent: list[str] = []  # the host's state at the leader, whenever it was not up

    def beating_long_after() -> bool:
        states = {h.address: h.state for h in ProviderClient(a.url).call("ListHosts") or []}
        if states.get(hp.url) != "up":
            absent.append(str(states.get(hp.url)))
        (heard,) = [h for h in ProviderClient(b.url).call("ListHosts") if h.address == hp.url]
        return heard.lastSeen is not None and heard.lastSeen >= past

    wait_for(beating_long_after, timeout=60, what="beats for several host timeouts")
    assert not absent, f"the host was not up at the leader: {absent}"
    assert beats_heard(a) == 0 and beats_heard(b) >= 5 * timeout / 0.5  # every beat to b
    assert downs(a) == [] and downs(b) == []
    assert grid.leader() is a and hosts_up(a) == {hp.url}

    hp.kill()  # SIGKILL: no DeregisterHost, its beats just stop
    wait_for(lambda: hp.url not in hosts_up(a), timeout=30, what="the leader to mark it down")
    assert downs(a) == [hp.url]  # the leader judged it, by the beats b wrote
    assert downs(b) == []
    assert "no heartbeat" in a.log().split(f"host {hp.url} is down:")[1].splitlines()[0]
    states = {h.address: h.state for h in ProviderClient(b.url).call("ListHosts")}
    assert states[hp.url] == "down"

def test_a_registry_restarted_under_load_loses_nothing(tmp_path: Path) -> None:
    """PostgreSQL stopped and started while two SPs relay: calls to the deployment they know
    go on; a message that needs a new deployment meanwhile gets dyn:RegistryUnavailable at
    once; afterwards both reconnect, the new service deploys, and the usage counted during the
    outage is in the book."""
    server = PostgresServer.create()
    grid = Grid(tmp_path, server.url)
    try:
        a, b = grid.start_sp(), grid.start_sp()
        grid.add_hp(a)
        ProviderClient(a.url).publish(samples_dir() / "echo")
        ProviderClient(a.url).publish(make_package(tmp_path, name="Later"))
        wait_advertised(b.url, "Echo")
        wait_advertised(b.url, "Later")
        known = echo(a.url, "before")
        echo(b.url, "before-b")
        stop = threading.Event()
        outcomes: list[tuple[str, int, str]] = []

        def keep_calling(sp_url: str) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                reply = post(
                    f"{sp_url}/services/Echo", envelope(echo_body(f"x{n}")),
                    soap_action=ECHO_ACTION, timeout=30,
                )
                deployment = reply.headers.get("x-dynasoar-deployment", "")
                outcomes.append((sp_url, reply.status, deployment))

        callers = [threading.Thread(target=keep_calling, args=(sp.url,)) for sp in (a, b)]
        for caller in callers:
            caller.start()
        server.stop()
        try:
            wait_for(lambda: len(outcomes) > 40, what="calls during the outage")
            cold = post(
                f"{a.url}/services/Later", envelope(echo_body("cold")), soap_action=ECHO_ACTION,
                timeout=30,
            )
            assert cold.status == 500
            assert "{%s}RegistryUnavailable" % ns.DYN in cold.fault_codes(), cold.body[:800]
            during = len(outcomes)
        finally:
            server.start()
        wait_for(lambda: len(outcomes) > during + 40, what="calls after the outage")
        stop.set()
        for caller in callers:
            caller.join(timeout=60)
        assert outcomes and all(status == 200 for _, status, _ in outcomes), [
            o for o in outcomes if o[1] != 200
        ][:3]
        assert {d for _, _, d in outcomes} == {known}
        # Both SPs reconnected: the service that could not be deployed now is.
        wait_for(
            lambda: post(
                f"{b.url}/services/Later", envelope(echo_body("now")), soap_action=ECHO_ACTION
            ).status
            == 200,
            timeout=30,
            what="a new deployment after the registry came back",
        )
        # Each SP took its instance lock again (its session ended with the server): neither
        # is taken for dead by the other (which would settle its moves, take over its replies).
        watcher = Registry(server.url)
        try:

            def instances() -> set[str]:  # (each SP writes its counts once a second)
                rows = watcher.db.query("SELECT DISTINCT instance FROM deployment_load")
                return {str(row[0]) for row in rows}

            wait_for(lambda: len(instances()) == 2, timeout=10, what="both SPs' counts")
            wait_for(
                lambda: watcher.alive(sorted(instances())) == instances(),
                timeout=10,
                what="both SPs alive to each other again",
            )
        finally:
            watcher.close()
        # Nothing counted was lost: every Echo call is in the book (both SPs flush on stop).
        calls = len(outcomes) + 2
        for sp in grid.sps:
            sp.stop()
        grid.sps = [grid.start_sp()]
        rows = ProviderClient(grid.sps[0].url).call("GetUsage") or []
        counted = sum(r.messages for r in rows if r.service == "Echo")
        assert counted == calls
    finally:
        grid.stop()
        server.destroy()


def test_a_host_flooding_heartbeats_is_refused_without_slowing_the_sp(grid: Grid) -> None:
    sp = grid.start_sp()
    hp = grid.add_hp(sp)
    ProviderClient(sp.url).publish(samples_dir() / "echo")
    echo(sp.url, "warm")
    request = (
        '<sp:RegisterHost xmlns:sp="urn:dynasoar:2006:provider">'
        f"<sp:address>{hp.url}</sp:address><sp:heartbeat>2</sp:heartbeat></sp:RegisterHost>"
    )
    busy = ok = 0
    for _ in range(300):  # the same host, registering again and again
        reply = post(
            f"{sp.url}/dynasoar/ServiceProvider",
            envelope(
                request,
                f"<wsa:To>{sp.url}/dynasoar/ServiceProvider</wsa:To>"
                "<wsa:Action>urn:dynasoar:2006:provider/RegisterHost</wsa:Action>"
                "<wsa:MessageID>urn:uuid:00000000-0000-0000-0000-000000000000</wsa:MessageID>"
                "<wsa:ReplyTo><wsa:Address>http://www.w3.org/2005/08/addressing/anonymous"
                "</wsa:Address></wsa:ReplyTo>",
            ),
            soap_action="urn:dynasoar:2006:provider/RegisterHost",
        )
        if reply.status == 200:
            ok += 1
        else:
            assert "{%s}Busy" % ns.DYN in reply.fault_codes(), reply.body[:600]
            busy += 1
        assert echo(sp.url, "still") is not None  # the SP goes on relaying meanwhile
    assert busy > 250 and ok <= 5
    assert hp.url in hosts_up(sp)


def versioned(tmp: Path, name: str, version: str) -> Path:
    package = make_package(tmp / version, name=name)
    manifest = package / "dynasoar.toml"
    manifest.write_text(manifest.read_text().replace('version = "1.0"', f'version = "{version}"'))
    return package


def at_once(*calls: Callable[[], object]) -> list[object]:
    """Run the calls in threads released together; their results (or what they raised)."""
    start = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # reported by the caller's assertions
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results


def test_rollouts_on_two_sps_at_once_deploy_each_version_once(
    grid: Grid, tmp_path: Path
) -> None:
    """The same rollout asked of both SPs at once (as behind a load balancer), then the same
    canary split, while both relay: each new version is deployed once, under the single
    flight across SPs that first messages take too, and no call fails."""
    a, b = grid.start_sp(), grid.start_sp()
    for sp in (a, b, a):
        grid.add_hp(sp)
    ProviderClient(a.url).publish(versioned(tmp_path, "Roll", "1.0"))
    wait_advertised(b.url, "Roll")
    echo(b.url, "first", "Roll")
    failures: list[str] = []
    relaying = threading.Event()

    def relay() -> None:
        i = 0
        while not relaying.is_set():
            sp = (a, b)[i % 2]
            reply = post(f"{sp.url}/services/Roll", envelope(echo_body(f"r{i}")),
                         soap_action=ECHO_ACTION)
            if reply.status != 200:
                failures.append(reply.body[:300].decode(errors="replace"))
            i += 1

    relayer = threading.Thread(target=relay)
    relayer.start()
    try:
        ProviderClient(a.url).publish(versioned(tmp_path, "Roll", "1.1"), rollout=False)
        outcomes = at_once(
            *(lambda sp=sp: ProviderClient(sp.url).call("Rollout", name="Roll", version="1.1")
              for sp in (a, b))
        )
        assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
        started = [i for o in outcomes for i in o.started or []]  # type: ignore[attr-defined]
        assert len(started) == 1, f"{len(started)} deployments of 1.1 made: {outcomes}"

        ProviderClient(b.url).publish(versioned(tmp_path, "Roll", "1.2"), rollout=False)
        client = ProviderClient(a.url)
        share = client.service._binding.wsdl.types.get_type("{urn:dynasoar:2006}TrafficShare")
        split = [share(version="1.1", percent=50), share(version="1.2", percent=50)]
        outcomes = at_once(
            *(lambda sp=sp: ProviderClient(sp.url).call("SetTraffic", name="Roll", share=split)
              for sp in (a, b))
        )
        assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
        started = [i for o in outcomes for i in o.started or []]  # type: ignore[attr-defined]
        assert len(started) == 1, f"{len(started)} deployments of 1.2 made: {outcomes}"
    finally:
        relaying.set()
        relayer.join(timeout=60)
    assert not failures, failures[:3]
    # What the hosts themselves run: one deployment of each version taking traffic.
    on_hosts = [d for hp in grid.hps for d in hosted(hp.url) if d.get("service") == "Roll"]
    records = {d.id: d.version for d in deployments(a, "Roll")}  # type: ignore[attr-defined]
    assert sorted(records.values()) == ["1.1", "1.2"], records
    assert sorted(d["id"] for d in on_hosts) == sorted(records), on_hosts


def test_usage_of_a_deployment_another_sp_undeployed_is_billed_once(grid: Grid) -> None:
    """A deployment made and undeployed through one SP: GetUsage on the other asks its host
    (told by the registry that it went), bills it as the host reports it, and the first SP
    asked afterwards bills it no second time (the figures taken are in the shared book)."""
    from .hosted import host_usage

    # the control loops take no figures of their own meanwhile: only GetUsage does
    a = grid.start_sp("--reconcile-interval", "3600")
    b = grid.start_sp("--reconcile-interval", "3600")
    hp = grid.add_hp(a)
    wait_for(lambda: hp.url in hosts_up(b), what="the host, known to both SPs")
    ProviderClient(a.url).publish(samples_dir() / "echo")
    ProviderClient(a.url).call("Deploy", name="Echo", host=hp.url)
    assert ProviderClient(a.url).call("Undeploy", name="Echo") == 1
    (ended,) = host_usage(hp.url)
    assert ended.state == "ended" and ended.cpu_seconds > 0

    def billed(sp: str) -> float:
        rows = ProviderClient(sp).call("GetUsage") or []
        return sum(r.cpuSeconds for r in rows if r.host == hp.url and r.service == "Echo")

    wait_for(lambda: billed(b.url) > 0, what="the other SP to bill the ended deployment")
    assert billed(b.url) == pytest.approx(ended.cpu_seconds, rel=1e-9, abs=1e-9)
    assert billed(a.url) == pytest.approx(ended.cpu_seconds, rel=1e-9, abs=1e-9)
