"""What operators watch, on real processes: ``/metrics`` in the Prometheus text format (read
back with prometheus_client's own parser) moving as messages flow, deployments come and go and
a host dies; ``/readyz`` saying 503 while an SP stops or while an HP is not registered."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dynasoar.paths import SOURCE_ROOT, samples_dir
from dynasoar.procs import start_actor

from .conftest import Cluster, wait_for
from .wire import ECHO_ACTION, ECHO_NS, echo_body, envelope, get, post, wsa_headers

MakeCluster = Callable[..., Cluster]
LIBVIRT_SOCKET = "/run/libvirt/libvirt-sock"


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

    # Every family either actor exposes is in the operator's manual.
    manual = (SOURCE_ROOT / "docs" / "operating.md").read_text()
    for base in (sp, host):
        families = text_string_to_metric_families(get(base + "/metrics").body.decode())
        for family in families:
            if family.name.startswith("dynasoar_"):
                assert f"`{family.name}" in manual, family.name

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


def test_an_hp_is_ready_once_registered(make_cluster: MakeCluster, tmp_path: Path) -> None:
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


class SocketRelay:
    """A Unix socket that relays to another (libvirt's): closing it cuts every connection
    through it, as libvirtd going away would."""

    def __init__(self, path: Path, target: str) -> None:
        self.path = path
        self.target = target
        self._server: socket.socket | None = None
        self._open: list[socket.socket] = []

    def start(self) -> None:
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(self.path))
        server.listen(16)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                near, _ = server.accept()
            except OSError:
                return
            far = socket.socket(socket.AF_UNIX)
            far.connect(self.target)
            self._open += [near, far]
            for a, b in ((near, far), (far, near)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self.path.unlink(missing_ok=True)
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._open.clear()


@pytest.mark.skipif(shutil.which("libvirtd") is None, reason="libvirt (scripts/install-vm.sh)")
def test_an_hp_whose_libvirt_goes_away_is_not_ready(tmp_path: Path) -> None:
    subprocess.run(["bash", str(SOURCE_ROOT / "scripts" / "start-libvirt.sh")], check=True)
    relay = SocketRelay(tmp_path / "libvirt.sock", LIBVIRT_SOCKET)
    relay.start()
    hp = start_actor(
        "hp",
        [
            "--port",
            "0",
            "--data",
            str(tmp_path / "hp"),
            "--backend",
            "libvirt",
            "--libvirt-uri",
            f"qemu+unix:///system?socket={relay.path}",
        ],
        tmp_path / "hp.log",
    )
    try:
        assert get(hp.url + "/readyz").status == 200
        relay.stop()  # libvirt is gone for this HP
        gone = get(hp.url + "/readyz")
        assert gone.status == 503
        assert gone.body.startswith(b"not ready: ") and b"libvirt" in gone.body
        assert get(hp.url + "/healthz").status == 200
        relay.start()  # back: the HP connects again
        assert get(hp.url + "/readyz").status == 200
    finally:
        hp.stop()
        relay.stop()
