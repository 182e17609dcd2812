"""Deployments over time: undeploy stops the service process; an SP restart reuses live
deployments and drops dead ones; an HP shutdown takes its services with it."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from dynasoar import ns
from dynasoar.consumer.call import call
from dynasoar.errors import RemoteFault
from dynasoar.paths import samples_dir

from .conftest import Cluster, make_package, wait_for

DYN = ns.DYN


def _answers(endpoint: str) -> bool:
    parts = urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
    try:
        conn.request("GET", "/?wsdl")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def test_undeploy_stops_the_service_process(cluster: Cluster, echo: str) -> None:
    call(echo + "?wsdl", "Echo", ["text=x"])
    (deployment,) = cluster.client.call("ListDeployments")
    assert _answers(deployment.endpoint)

    assert cluster.client.call("Undeploy", name="Echo") == 1
    assert not cluster.client.call("ListDeployments")
    wait_for(lambda: not _answers(deployment.endpoint), what="the service process to stop")

    again = call(echo + "?wsdl", "Echo", ["text=y"])
    assert again.headers["x-dynasoar-cold"] == "1"


def test_explicit_deploy_on_a_chosen_host(cluster: Cluster, echo: str) -> None:
    target = cluster.hps[1].url
    deployment = cluster.client.call("Deploy", name="Echo", host=target)
    assert deployment.host == target
    reply = call(echo + "?wsdl", "Echo", ["text=x"])
    assert reply.headers["x-dynasoar-host"] == target
    assert reply.headers["x-dynasoar-cold"] == "0"


def test_sp_restart_reuses_a_live_deployment(cluster: Cluster, echo: str) -> None:
    first = call(echo + "?wsdl", "Echo", ["text=before"])
    assert cluster.sp.stop() == 0
    cluster.start_sp()
    echo_url = cluster.service_url("Echo")
    after = call(echo_url + "?wsdl", "Echo", ["text=after"])
    assert after.value == "after"
    assert after.headers["x-dynasoar-cold"] == "0"
    assert after.headers["x-dynasoar-deployment"] == first.headers["x-dynasoar-deployment"]


def test_hosts_silent_while_the_sp_was_down_are_not_marked_down(
    make_cluster: Callable[..., Cluster],
) -> None:
    # SIGKILLed, down for longer than --host-timeout: its hosts' beats failed meanwhile (and
    # back off), which is no fault of theirs. Restarted, it keeps them up and reuses their
    # deployments, however long it then runs.
    cluster = make_cluster(sp_args=["--host-timeout", "2"], hps=[["--heartbeat", "0.5"]])
    cluster.client.publish(samples_dir() / "echo")
    wsdl = cluster.service_url("Echo") + "?wsdl"
    first = call(wsdl, "Echo", ["text=before"])
    cluster.sp.kill()
    time.sleep(7.5)  # the host's beats fail and back off: its next one comes ~5 s later
    cluster.start_sp()
    for _ in range(12):  # past the time its hosts have to beat again (host timeout + retry)
        after = call(wsdl, "Echo", ["text=after"])
        assert after.headers["x-dynasoar-cold"] == "0"
        assert after.headers["x-dynasoar-deployment"] == first.headers["x-dynasoar-deployment"]
        time.sleep(1)
    assert [h.state for h in cluster.client.call("ListHosts")] == ["up"]
    assert " is down" not in cluster.sp.log()


def test_sp_restart_drops_a_dead_deployment(cluster: Cluster, echo: str) -> None:
    first = call(echo + "?wsdl", "Echo", ["text=before"])
    cluster.sp.stop()
    dead_host = next(hp for hp in cluster.hps if hp.url == first.headers["x-dynasoar-host"])
    dead_host.stop()
    cluster.start_sp()
    assert not cluster.client.call("ListDeployments")
    after = call(cluster.service_url("Echo") + "?wsdl", "Echo", ["text=after"])
    assert after.value == "after"
    assert after.headers["x-dynasoar-cold"] == "1"
    assert after.headers["x-dynasoar-host"] != dead_host.url


def test_hp_shutdown_stops_its_services(cluster: Cluster, echo: str) -> None:
    call(echo + "?wsdl", "Echo", ["text=x"])
    (deployment,) = cluster.client.call("ListDeployments")
    host = next(hp for hp in cluster.hps if hp.url == deployment.host)
    assert host.stop() == 0
    assert not _answers(deployment.endpoint)


def test_a_killed_host_fails_over_for_a_stateless_service(cluster: Cluster, echo: str) -> None:
    first = call(echo + "?wsdl", "Echo", ["text=x"])
    host = next(hp for hp in cluster.hps if hp.url == first.headers["x-dynasoar-host"])
    host.kill()
    (deployment,) = cluster.client.call("ListDeployments")
    wait_for(lambda: not _answers(deployment.endpoint), what="the service to go away")
    # The message that finds its deployment gone is sent once more, to a new deployment.
    again = call(echo + "?wsdl", "Echo", ["text=y"])
    assert again.value == "y"
    assert again.headers["x-dynasoar-host"] != host.url
    assert again.headers["x-dynasoar-cold"] == "1"
    hosts = {h.address: h.state for h in cluster.client.call("ListHosts")}
    assert hosts[host.url] == "down"


def test_a_stopping_host_deregisters_at_once(cluster: Cluster, echo: str) -> None:
    first = call(echo + "?wsdl", "Echo", ["text=x"])
    host = next(hp for hp in cluster.hps if hp.url == first.headers["x-dynasoar-host"])
    assert host.stop() == 0
    # The SP heard it go (no heartbeat timeout to wait for): nothing is routed there.
    assert not cluster.client.call("ListDeployments")
    hosts = {h.address: h.state for h in cluster.client.call("ListHosts")}
    assert hosts[host.url] == "left"
    again = call(echo + "?wsdl", "Echo", ["text=y"])
    assert again.value == "y"
    assert again.headers["x-dynasoar-host"] != host.url
    assert again.headers["x-dynasoar-cold"] == "1"
    assert "deregistered from" in host.log()


def test_a_stateful_service_whose_host_vanished_is_lost_until_deployed_again(
    cluster: Cluster,
) -> None:
    cluster.client.publish(samples_dir() / "counter")
    counter = cluster.service_url("Counter") + "?wsdl"
    assert call(counter, "Increment", []).value == 1
    assert call(counter, "Increment", []).value == 2
    (deployment,) = cluster.client.call("ListDeployments")
    host = next(hp for hp in cluster.hps if hp.url == deployment.host)
    host.kill()
    wait_for(lambda: not _answers(deployment.endpoint), what="the service to go away")
    # Its state went with its host: not this message, nor any later one, is answered from
    # an empty counter elsewhere. Each says dyn:HostLost, naming the host.
    for soap12 in (False, True, False):
        with pytest.raises(RemoteFault) as lost:
            call(counter, "Increment", [], soap12=soap12)
        assert (DYN, "HostLost") in lost.value.fault.subcodes
        assert host.url in lost.value.fault.reason
    (record,) = cluster.client.call("ListDeployments")
    assert (record.id, record.state) == (deployment.id, "lost")
    assert record.host == host.url and "stopped answering" in record.reason
    # Deployed again explicitly: a fresh counter, on the host that is left.
    again = cluster.client.call("Deploy", name="Counter")
    assert again.host != host.url
    fresh = call(counter, "Increment", [])
    assert fresh.value == 1
    assert fresh.headers["x-dynasoar-cold"] == "0"
    assert [d.state for d in cluster.client.call("ListDeployments")] == ["ready"]


def test_republishing_keeps_each_version_once(cluster: Cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    package = make_package(tmp_path)
    first = cluster.client.publish(package)
    again = cluster.client.publish(package)
    assert again.sha256 == first.sha256  # packing is deterministic
    manifest = package / "dynasoar.toml"
    manifest.write_text(manifest.read_text().replace('version = "1.0"', 'version = "2.0"'))
    second = cluster.client.publish(package)
    assert second.version == "2.0" and second.sha256 != first.sha256
    services = cluster.client.call("ListServices")
    assert [(s.name, s.version, s.available) for s in services] == [("Echo", "2.0", ["1.0", "2.0"])]
    stored = sorted(
        p.name for p in (cluster.work / "sp" / "repository" / "packages" / "Echo").iterdir()
    )
    assert stored == [f"1.0-{first.sha256[:12]}.pkg", f"2.0-{second.sha256[:12]}.pkg"]
