"""What operators watch, on real processes: ``/metrics`` in the Prometheus text format (read
back with prometheus_client's own parser) moving as messages flow, deployments come and go and
a host dies; ``/readyz`` saying 503 while an SP stops or while an HP is not registered."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families

from dynasoar.paths import samples_dir

from .conftest import Cluster, wait_for
from .wire import ECHO_ACTION, ECHO_NS, echo_body, envelope, get, post, wsa_headers

MakeCluster = Callable[..., Cluster]


def scrape(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    reply = get(base + "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(reply.body.decode())
        for sample in family.samples
    }


def value(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def echo(url: str, version: str = "1.1") -> object:
    headers, _ = wsa_headers(to=url, action=ECHO_ACTION)
    reply = post(url, envelope(echo_body(), headers, version=version), version=version,
                 soap_action=ECHO_ACTION)  # fmt: skip
    assert reply.status == 200
    return reply


def test_metrics_move_as_messages_and_deployments_happen(cluster: Cluster) -> None:
    sp = cluster.sp.url
    before = scrape(sp)
    assert value(before, "dynasoar_build_info", role="sp", version="0.1.0") == 1
    assert value(before, "dynasoar_sp_hosts", state="up") == 2
    assert value(before, "dynasoar_sp_services") == 0
    assert value(before, "dynasoar_sp_messages_total", service="Echo", outcome="ok") == 0

    published = cluster.client.publish(samples_dir() / "echo")
    url = cluster.service_url("Echo")
    replies = [echo(url), echo(url, "1.2"), echo(url)]
    headers, _ = wsa_headers(to=f"{sp}/services/Nope", action=ECHO_ACTION)
    post(f"{sp}/services/Nope", envelope(echo_body(), headers), soap_action=ECHO_ACTION)

    after = scrape(sp)
    assert value(after, "dynasoar_sp_services") == 1
    assert value(after, "dynasoar_sp_messages_total", service="Echo", outcome="ok") == 3
    assert value(after, "dynasoar_sp_message_seconds_count", service="Echo") == 3
    assert value(after, "dynasoar_sp_message_seconds_sum", service="Echo") > 0
    assert (
        value(after, "dynasoar_sp_messages_total", service="-", outcome="DestinationUnreachable")
        == 1
    )
    assert value(after, "dynasoar_sp_cold_start_seconds_count", service="Echo") == 1
    assert value(after, "dynasoar_sp_deploys_total", service="Echo", result="ok") == 1
    assert value(after, "dynasoar_sp_deploy_seconds_count", service="Echo") == 1
    assert value(after, "dynasoar_sp_shipped_bytes_total", what="package") == published.size
    assert value(after, "dynasoar_sp_replicas", service="Echo") == 1
    assert value(after, "dynasoar_sp_deployments", state="ready") == 1
    assert value(after, "dynasoar_sp_outstanding_messages", service="Echo") == 0
    assert value(after, "dynasoar_sp_response_bytes_total", service="Echo") == sum(
        len(r.body)
        for r in replies  # type: ignore[attr-defined]
    )
    assert (
        value(after, "dynasoar_sp_control_messages_total", operation="Publish", outcome="ok") == 1
    )
    assert value(after, "process_cpu_seconds_total") > 0

    host = replies[0].headers["x-dynasoar-host"]  # type: ignore[attr-defined]
    hp = scrape(host)
    assert value(hp, "dynasoar_build_info", role="hp", version="0.1.0") == 1
    assert value(hp, "dynasoar_hp_control_messages_total", operation="Deploy", outcome="ok") == 1
    assert value(hp, "dynasoar_hp_control_seconds_count", operation="Deploy") == 1
    assert value(hp, "dynasoar_hp_deployments", kind="code", state="ready") == 1
    assert value(hp, "dynasoar_hp_capacity") == 8

    cluster.client.call("Undeploy", name="Echo")
    gone = scrape(sp)
    assert value(gone, "dynasoar_sp_undeploys_total", result="ok") == 1
    assert value(gone, "dynasoar_sp_replicas", service="Echo") == 0
    assert value(scrape(host), "dynasoar_hp_deployments", kind="code", state="ready") == 0


def test_a_lost_host_shows_as_a_failover_and_a_host_down(cluster: Cluster) -> None:
    cluster.client.publish(samples_dir() / "echo")
    url = cluster.service_url("Echo")
    first = echo(url)
    host = first.headers["x-dynasoar-host"]  # type: ignore[attr-defined]
    next(hp for hp in cluster.hps if hp.url == host).kill()
    (deployment,) = cluster.client.call("ListDeployments")
    wait_for(lambda: not _answers(deployment.endpoint), what="the service to go away")
    again = echo(url)  # sent once more, to a new deployment elsewhere
    assert again.headers["x-dynasoar-host"] != host  # type: ignore[attr-defined]
    metrics = scrape(cluster.sp.url)
    assert value(metrics, "dynasoar_sp_failovers_total", service="Echo") == 1
    assert value(metrics, "dynasoar_sp_deploys_total", service="Echo", result="ok") == 2
    assert value(metrics, "dynasoar_sp_hosts", state="down") == 1
    assert value(metrics, "dynasoar_sp_hosts", state="up") == 1


def _answers(endpoint: str) -> bool:
    try:
        return get(endpoint + "?wsdl", timeout=2).status == 200
    except OSError:
        return False


def test_readyz_is_503_while_the_sp_stops(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(hps=[()])
    cluster.client.publish(samples_dir() / "echo")
    echo(cluster.service_url("Echo"))
    parts = urlsplit(cluster.sp.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request("GET", "/readyz")
    first = conn.getresponse()
    assert (first.status, first.read()) == (200, b"ready\n")
    assert get(cluster.sp.url + "/healthz").status == 200

    slow_body = f'<e:Compute xmlns:e="{ECHO_NS}"><e:millis>4000</e:millis></e:Compute>'
    slow = threading.Thread(
        target=post,
        args=(cluster.service_url("Echo"), envelope(slow_body)),
        kwargs={"soap_action": f"{ECHO_NS}/Compute"},
        daemon=True,
    )
    slow.start()
    time.sleep(0.5)  # the call is at the service: the stop drains it
    os.kill(cluster.sp.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while True:  # the same keep-alive connection, until the answer changes
        conn.request("GET", "/readyz")
        answer = conn.getresponse()
        body = answer.read()
        if answer.status != 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (answer.status, body) == (503, b"not ready: stopping\n")
    conn.close()
    slow.join(timeout=60)
    assert cluster.sp.stop() == 0


def test_an_hp_is_ready_once_registered(make_cluster: MakeCluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dynasoar.procs import start_actor

    lonely = start_actor(
        "hp",
        ["--port", "0", "--data", str(tmp_path / "lonely"), "--sp", "http://127.0.0.1:9"],
        tmp_path / "lonely.log",
    )
    try:
        reply = get(lonely.url + "/readyz")
        assert reply.status == 503
        assert reply.body == b"not registered with http://127.0.0.1:9 (yet)\n".join(
            [b"not ready: ", b""]
        )
        assert get(lonely.url + "/healthz").status == 200  # alive all the same
    finally:
        lonely.stop()
    cluster = make_cluster(hps=[()])
    assert get(cluster.hps[0].url + "/readyz").status == 200
