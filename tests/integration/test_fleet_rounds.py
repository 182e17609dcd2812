"""What a real SP asks a simulated fleet (the fleet journals every call its hosts take, in order
of arrival), for the README's bounds: a placement decision under a policy other than the default
asks the policy's best three hosts for their live Status, no more; each round of the control
loop reconciles the hosts holding deployments and 16 of the others, in turn, until every host
was asked; and it checks the hosts nothing else hears from (named with ``--hp``, down, never
beating) 16 at a time, in turn, until every one was checked. The heartbeat rate sets the
interval hosts are told; a host that dies between beats is found by the placement that asks
it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pytest

from dynasoar.bench.fleet_hosts import Fleet
from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.paths import samples_dir
from dynasoar.terms import HostTerms

from .conftest import wait_for
from .test_fleet import signed_fleet
from .wire import ECHO_ACTION, echo_body, envelope, post, wsa_headers

Call = tuple[str, str]  # (operation, host address), as the fleet journals it
#: The README's bounds: hosts a decision of a policy other than the default asks; hosts without
#: deployments each round reconciles; silent hosts each round checks.
BEST = 3
SLICE = 16
PLACED = re.compile(r"placement of Echo: (\S+) of (\d+) hosts after checking (\d+)")


def rounds(calls: Iterable[Call]) -> list[list[Call]]:
    """The control loop's whole rounds in a journal of calls. A round checks the hosts nothing
    else hears from (Status), then reconciles (List), then takes the figures of the hosts
    holding deployments (GetUsage), and the next starts only once it is done: so the calls
    between two runs of GetUsage are one round. Those before the first run and after the last
    (rounds seen in part) are left out."""
    found: list[list[Call]] = []
    current: list[Call] | None = None
    for operation, address in calls:
        if operation == "GetUsage":
            if current:
                found.append(current)
            current = []
        elif current is not None:
            current.append((operation, address))
    return found


def journal(fleet: Fleet) -> list[Call]:
    """The fleet's journal as it stands (copied at once: the fleet's thread appends to it)."""
    return list(fleet.calls)


def asked(calls: Iterable[Call], operation: str) -> list[str]:
    return [address for op, address in calls if op == operation]


def priced(fleet: Fleet) -> None:
    """Each host at its own price: 1 to N, not in the order of the hosts' addresses."""
    for index, host in enumerate(fleet.hosts):
        host.terms = HostTerms(price=float((index * 7) % len(fleet.hosts) + 1))


@pytest.mark.parametrize(
    "policy",
    [
        "cheapest",  # make test: one policy other than the default
        pytest.param("round-robin", marks=pytest.mark.soak),
        pytest.param("data-locality", marks=pytest.mark.soak),
    ],
)
def test_placement_by_another_policy_asks_its_best_three(tmp_path: Path, policy: str) -> None:
    """``--placement POLICY`` with 40 priced simulated hosts: each first call's placement asks
    three hosts for their live Status (each once, no other Status call), deploys on one of
    them, and logs that it checked three; for ``cheapest``, the three are the cheapest of the
    fleet and the deployment goes to the cheapest."""
    with signed_fleet(tmp_path, 40, "--placement", policy, prepare=priced) as (sp, fleet):
        by_price = sorted(fleet.hosts, key=lambda h: h.terms.price)
        client = ProviderClient(sp.url)
        client.publish(samples_dir() / "echo")
        url = f"{sp.url}/services/Echo"
        decisions = []
        for n in range(3):
            fleet.calls.clear()
            headers, _ = wsa_headers(to=url)
            reply = post(url, envelope(echo_body(f"cold {n}"), headers), soap_action=ECHO_ACTION)
            assert reply.status == 200, reply.body[:300]
            assert reply.text(".//echo:text") == f"cold {n}"
            calls = journal(fleet)
            checked = asked(calls, "Status")
            (deployed,) = asked(calls, "Deploy")
            decisions.append((checked, deployed))
            assert client.call("Undeploy", name="Echo") == 1
        for checked, deployed in decisions:
            assert len(checked) == len(set(checked)) == BEST
            assert deployed in checked
            if policy == "cheapest":
                assert set(checked) == {h.address for h in by_price[:BEST]}
                assert deployed == by_price[0].address
        logged = PLACED.findall(sp.log())
        assert [(chosen, int(hosts), int(k)) for chosen, hosts, k in logged] == [
            (deployed, 40, BEST) for _, deployed in decisions
        ]


def test_reconciliation_asks_the_holders_and_sixteen_others_in_turn(tmp_path: Path) -> None:
    """60 simulated hosts, two of them holding deployments, a round every second: each round
    Lists the two holders and at most 16 others, each once, and asks no host its Status (every
    host is heard from); four rounds in a row List every host of the fleet."""
    with signed_fleet(tmp_path, 60, "--reconcile-interval", "1") as (sp, fleet):
        client = ProviderClient(sp.url)
        client.publish(samples_dir() / "echo")
        holders = {fleet.hosts[7].address, fleet.hosts[41].address}
        for address in sorted(holders):
            client.call("Deploy", name="Echo", host=address)
        fleet.calls.clear()
        wait_for(
            lambda: len(rounds(journal(fleet))) >= 5,
            timeout=90,
            what="five whole rounds of the control loop",
        )
        whole = rounds(journal(fleet))
        for calls in whole:
            listed = asked(calls, "List")
            assert [op for op, _ in calls if op != "List"] == []
            assert len(listed) == len(set(listed))
            assert holders <= set(listed)
            assert len(listed) <= len(holders) + SLICE
        others = 60 - len(holders)
        turns = -(-others // SLICE)  # 4: 16 at a time, in turn
        assert set().union(*(asked(c, "List") for c in whole[:turns])) == {
            h.address for h in fleet.hosts
        }


def test_the_control_loop_checks_silent_hosts_sixteen_at_a_time(tmp_path: Path) -> None:
    """40 hosts named to the SP with ``--hp`` that never beat and answer nothing (down), and one
    beating and holding a deployment, a round every second: each round asks at most 16 of the
    silent hosts for their Status, each once, and no other host; three rounds in a row check
    all 40."""

    def silence(fleet: Fleet) -> None:
        for host in fleet.hosts[:40]:
            host.silent = True

    with signed_fleet(tmp_path, 41, "--reconcile-interval", "1", prepare=silence) as (sp, fleet):
        silent = {h.address for h in fleet.hosts[:40]}
        holder = fleet.hosts[40].address
        client = ProviderClient(sp.url)
        assert {h.address for h in client.call("ListHosts") if h.state == "down"} == silent
        client.publish(samples_dir() / "echo")
        client.call("Deploy", name="Echo", host=holder)
        fleet.calls.clear()
        wait_for(
            lambda: len(rounds(journal(fleet))) >= 4,
            timeout=90,
            what="four whole rounds of the control loop",
        )
        whole = rounds(journal(fleet))
        for calls in whole:
            checked = asked(calls, "Status")
            assert 0 < len(checked) <= SLICE
            assert len(checked) == len(set(checked))
            assert set(checked) <= silent
            assert asked(calls, "List") == [holder]  # the one up, holding a deployment
        turns = -(-len(silent) // SLICE)  # 3: 16 at a time, in turn
        assert set().union(*(asked(c, "Status") for c in whole[:turns])) == silent
        assert {h.address for h in client.call("ListHosts") if h.state == "down"} == silent


def test_hosts_are_told_to_beat_as_the_heartbeat_rate_divides_the_fleet(tmp_path: Path) -> None:
    """--heartbeat-rate 10 and 60 hosts asking for 2 s: once the SP knows them all, each is
    told to beat every 6 s (the fleet's 60 over 10 beats a second), so that together they
    beat about ten times a second."""
    with signed_fleet(tmp_path, 60, "--heartbeat-rate", "10", rounds=2) as (_, fleet):
        assert fleet.heartbeat == 2.0
        assert fleet.stats.beats_refused == fleet.stats.beats_failed == 0
        assert {h.interval for h in fleet.hosts} == {6.0}


def test_a_host_that_died_between_beats_is_found_by_the_placement_that_needs_it(
    tmp_path: Path,
) -> None:
    """The two cheapest of 12 hosts go down after their beats (their figures in the SP are
    fresh): the first call's placement asks them, finds them gone, deploys on the cheapest
    that answers, and the SP has them down without waiting for their next beat."""
    with signed_fleet(tmp_path, 12, "--placement", "cheapest", prepare=priced) as (sp, fleet):
        by_price = sorted(fleet.hosts, key=lambda h: h.terms.price)
        for host in by_price[:2]:
            host.silent = True  # every call now answered HTTP 503
        client = ProviderClient(sp.url)
        client.publish(samples_dir() / "echo")
        url = f"{sp.url}/services/Echo"
        fleet.calls.clear()
        reply = post(url, envelope(echo_body("placed")), soap_action=ECHO_ACTION)
        assert reply.status == 200, reply.body[:300]
        calls = journal(fleet)
        assert asked(calls, "Deploy") == [by_price[2].address]
        assert {h.address for h in by_price[:2]} <= set(asked(calls, "Status"))
        dead = {h.address for h in by_price[:2]}
        wait_for(
            lambda: {h.address for h in client.call("ListHosts") if h.state == "down"} == dead,
            timeout=30,
            what="the dead hosts to be marked down",
        )
