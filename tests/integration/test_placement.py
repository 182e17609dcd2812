"""Where services run: placement policies, consumer-chosen hosts, a consumer deploying without
an SP. Each test observes which HP answered (X-Dynasoar-Host) and the SP's status."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dynasoar import ns
from dynasoar.consumer.call import call
from dynasoar.paths import samples_dir

from .conftest import Cluster, make_package
from .wire import ECHO_ACTION, echo_body, envelope, post, wsa_headers

MakeCluster = Callable[..., Cluster]


def first_call(cluster: Cluster, name: str) -> str:
    """The host that answered the first (deploying) call to ``name``."""
    reply = call(cluster.service_url(name) + "?wsdl", "Echo", ["text=where?"])
    assert reply.headers["x-dynasoar-cold"] == "1"
    return reply.headers["x-dynasoar-host"]


def publish(cluster: Cluster, tmp: Path, name: str, placement: str = "") -> None:
    cluster.client.publish(make_package(tmp, "echo", name, placement))


def test_least_loaded_spreads_services(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster()
    for name in ("One", "Two"):
        publish(cluster, tmp_path, name)
    assert {first_call(cluster, "One"), first_call(cluster, "Two")} == {
        hp.url for hp in cluster.hps
    }


def test_round_robin_takes_turns(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(sp_args=["--placement", "round-robin"], hps=[[], [], []])
    names = ["A", "B", "C", "D"]
    for name in names:
        publish(cluster, tmp_path, name)
    hosts = [first_call(cluster, name) for name in names]
    assert len(set(hosts[:3])) == 3 and hosts[3] == hosts[0]


def test_cheapest(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(hps=[["--price", "5"], ["--price", "1.5"], ["--price", "3"]])
    publish(cluster, tmp_path, "Thrifty", 'policy = "cheapest"')
    assert first_call(cluster, "Thrifty") == cluster.hps[1].url


def test_cheapest_never_picks_a_full_host(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(sp_args=["--placement", "cheapest"], hps=[])
    cheap = cluster.add_hp(capacity=1, args=["--price", "1"])
    dear = cluster.add_hp(capacity=4, args=["--price", "9"])
    publish(cluster, tmp_path, "First")
    publish(cluster, tmp_path, "Second")
    assert first_call(cluster, "First") == cheap.url
    assert first_call(cluster, "Second") == dear.url  # the cheap one is full


def test_data_locality(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(
        hps=[["--site", "leeds=0", "--site", "newcastle=5"], ["--site", "newcastle=1"], []]
    )
    publish(cluster, tmp_path, "NearData", 'policy = "data-locality"\ndata_site = "newcastle"')
    assert first_call(cluster, "NearData") == cluster.hps[1].url


def test_label_constraints(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(hps=[[], ["--label", "trusted=yes"]])
    publish(cluster, tmp_path, "Secret", 'labels = { trusted = "yes" }')
    assert first_call(cluster, "Secret") == cluster.hps[1].url
    publish(cluster, tmp_path, "TopSecret", 'labels = { trusted = "yes", clearance = "top" }')
    reply = post(cluster.service_url("TopSecret"), envelope(echo_body()), soap_action=ECHO_ACTION)
    assert "{%s}NoHostAvailable" % ns.DYN in reply.fault_codes()
    assert b"clearance" in reply.body


def preferring(hosts: list[str]) -> str:
    inner = "".join(f"<dyn:Host>{h}</dyn:Host>" for h in hosts)
    return f'<dyn:PreferredHosts xmlns:dyn="{ns.DYN}">{inner}</dyn:PreferredHosts>'


def test_preferred_hosts_are_honoured(cluster: Cluster, echo: str) -> None:
    for target in (cluster.hps[1].url, cluster.hps[0].url):
        headers, _ = wsa_headers(to=echo, extra=preferring([target]))
        reply = post(echo, envelope(echo_body("mine"), headers), soap_action=ECHO_ACTION)
        assert reply.status == 200
        assert reply.headers["x-dynasoar-host"] == target
    # two consumers, two preferences: a stateless service now runs on both
    assert {d.host for d in cluster.client.call("ListDeployments")} == {
        hp.url for hp in cluster.hps
    }


def test_preferred_hosts_that_cannot_host_are_refused(cluster: Cluster, echo: str) -> None:
    headers, _ = wsa_headers(to=echo, extra=preferring(["http://127.0.0.1:9"]))
    reply = post(echo, envelope(echo_body(), headers), soap_action=ECHO_ACTION)
    assert "{%s}NoHostAvailable" % ns.DYN in reply.fault_codes()
    assert b"preferred" in reply.body
    assert not cluster.client.call("ListDeployments")


def test_stateful_service_stays_where_it_is(cluster: Cluster) -> None:
    cluster.client.publish(samples_dir() / "counter")
    url = cluster.service_url("Counter") + "?wsdl"
    first = call(url, "Increment", [])
    for expected in (2, 3, 4):
        reply = call(url, "Increment", [])
        assert reply.value == expected  # one deployment, one counter
        assert reply.headers["x-dynasoar-host"] == first.headers["x-dynasoar-host"]
    other = next(hp.url for hp in cluster.hps if hp.url != first.headers["x-dynasoar-host"])
    headers, _ = wsa_headers(
        to=cluster.service_url("Counter"),
        action="urn:dynasoar:samples:counter/Increment",
        extra=preferring([other]),
    )
    body = '<c:Increment xmlns:c="urn:dynasoar:samples:counter"/>'
    reply = post(
        cluster.service_url("Counter"),
        envelope(body, headers),
        soap_action="urn:dynasoar:samples:counter/Increment",
    )
    assert "{%s}NoHostAvailable" % ns.DYN in reply.fault_codes()
    assert b"stateful" in reply.body


def test_a_consumer_deploys_without_any_sp(cluster: Cluster) -> None:
    hp = cluster.hps[0].url
    out = subprocess.run(
        [sys.executable, "-m", "dynasoar", "deploy", str(samples_dir() / "echo"), "--hp", hp],
        capture_output=True,
        text=True,
        timeout=120,
        env=_without_sp(),
    )
    assert out.returncode == 0, out.stderr
    deployment_id, endpoint = out.stdout.split(" as ")[1].strip().split(": ")
    result = call(endpoint + "?wsdl", "Echo", ["text=direct"])
    assert result.value == "direct"
    assert "x-dynasoar-host" not in result.headers  # no SP in between
    out = subprocess.run(
        [sys.executable, "-m", "dynasoar", "undeploy", deployment_id, "--hp", hp],
        capture_output=True,
        text=True,
        timeout=60,
        env=_without_sp(),
    )
    assert out.returncode == 0, out.stderr
    assert "undeployed" in out.stdout


def _without_sp() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "DYNASOAR_SP"}


@pytest.mark.parametrize("policy", ["least-loaded", "round-robin", "cheapest", "data-locality"])
def test_every_policy_name_is_accepted_in_a_manifest(
    cluster: Cluster, tmp_path: Path, policy: str
) -> None:
    name = "P" + policy.replace("-", "")
    publish(cluster, tmp_path, name, f'policy = "{policy}"')
    assert first_call(cluster, name) in {hp.url for hp in cluster.hps}
