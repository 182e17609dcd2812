"""Deployments' output through real SP and HP processes: a service printing a MiB per call
answers every call (its output is drained, never blocking it), its log on disk stays within
``--log-bytes``, ``dynasoar logs`` (the real command) shows its last lines before and after
undeploy, follows new output, and a host keeps the last ``--kept-logs`` logs of a service."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import zeep
import zeep.exceptions

from dynasoar import ns
from dynasoar.consumer.zeep_client import new_client
from dynasoar.paths import HOST_PORT

from .conftest import Cluster, make_package, wait_for
from .wire import Reply, envelope, post, wsa_headers

MakeCluster = Callable[..., Cluster]
LOG_BYTES = 256 << 10
LINES_PER_CALL = 8192  # of 128 bytes: 1 MiB per call

CHATTY = '''
"""Echo, printing a MiB to stdout and a line to stderr on every call."""
import itertools, sys, threading

import echo_service

_calls = itertools.count()
_lock = threading.Lock()


def application(environ, start_response):
    with _lock:
        n = next(_calls)
        sys.stdout.write("".join(
            "call %03d line %05d %s\\n" % (n, i, "x" * 107) for i in range(LINES)
        ))
        sys.stdout.flush()
        print("served call %03d" % n, file=sys.stderr, flush=True)
    return echo_service.application(environ, start_response)
'''


def chatty_package(tmp_path: Path, name: str, lines: int = LINES_PER_CALL) -> Path:
    package = make_package(tmp_path, "echo", name)
    (package / "chatty.py").write_text(CHATTY.replace("LINES", str(lines)))
    manifest = package / "dynasoar.toml"
    manifest.write_text(
        manifest.read_text().replace("echo_service:application", "chatty:application")
    )
    return package


def dynasoar_logs(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """``dynasoar logs ...`` as a user runs it (the SP from $DYNASOAR_SP)."""
    return subprocess.run(
        [sys.executable, "-m", "dynasoar", "logs", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DYNASOAR_SP": cluster.sp.url},
    )


def log_files(cluster: Cluster, deployment: str) -> list[Path]:
    return list((cluster.work / "hp1" / "logs" / deployment).glob("*.log"))


def test_a_service_printing_a_mib_per_call_answers_and_its_log_is_read_and_kept(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    cluster = make_cluster(hps=[["--log-bytes", str(LOG_BYTES)]])
    cluster.client.publish(chatty_package(tmp_path, "Chatty"))
    echo = new_client(cluster.service_url("Chatty") + "?wsdl", timeout=60).service
    answers = [echo.Echo(text=f"call {n}") for n in range(50)]
    assert answers == [f"call {n}" for n in range(50)]  # 50 MiB printed, every call answered

    (deployment,) = cluster.client.call("ListDeployments", name="Chatty")
    files = log_files(cluster, deployment.id)
    assert files and sum(f.stat().st_size for f in files) <= LOG_BYTES

    last = ["call 049 line 08190 " + "x" * 107, "call 049 line 08191 " + "x" * 107]
    shown = dynasoar_logs(cluster, "Chatty", "--tail", "3")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [*last, "served call 049"]
    assert f"# {deployment.id} on {cluster.hps[0].url}: running" in shown.stderr

    assert cluster.client.call("Undeploy", name="Chatty") == 1
    after = dynasoar_logs(cluster, "Chatty", "--tail", "2", "--deployment", deployment.id)
    assert after.returncode == 0, after.stderr
    assert after.stdout.splitlines() == [last[1], "served call 049"]
    assert f"{deployment.id} on {cluster.hps[0].url}: undeployed" in after.stderr
    assert sum(f.stat().st_size for f in log_files(cluster, deployment.id)) <= LOG_BYTES

    # without --tail: all the host kept, page by page (the log's latest half at least)
    whole = dynasoar_logs(cluster, "Chatty")
    assert whole.returncode == 0, whole.stderr
    lines = whole.stdout.splitlines()
    assert lines[-1] == "served call 049"
    assert LOG_BYTES // 2 // 128 <= len(lines) <= LOG_BYTES // 128 + 1


def test_logs_follow_new_output_until_interrupted(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    cluster = make_cluster(hps=[[]])
    cluster.client.publish(chatty_package(tmp_path, "Quiet", lines=2))
    echo = new_client(cluster.service_url("Quiet") + "?wsdl", timeout=60).service
    assert echo.Echo(text="first") == "first"
    follower = subprocess.Popen(
        [sys.executable, "-m", "dynasoar", "logs", "Quiet", "--follow", "--tail", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DYNASOAR_SP": cluster.sp.url},
    )
    seen: list[str] = []
    reading = threading.Thread(
        target=lambda: seen.extend(iter(follower.stdout.readline, "")),  # type: ignore[union-attr]
        daemon=True,
    )
    reading.start()
    try:
        wait_for(lambda: "served call 000\n" in seen, what="the tail")
        for n in (1, 2):
            assert echo.Echo(text=f"more {n}") == f"more {n}"
        wait_for(lambda: "served call 002\n" in seen, what="new output while following")
        x = "x" * 107
        assert seen == [
            "served call 000\n",
            f"call 001 line 00000 {x}\n",
            f"call 001 line 00001 {x}\n",
            "served call 001\n",
            f"call 002 line 00000 {x}\n",
            f"call 002 line 00001 {x}\n",
            "served call 002\n",
        ]
    finally:
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=30) == 130
        reading.join(timeout=10)


def test_a_host_keeps_the_last_logs_of_a_service(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(hps=[["--kept-logs", "2"]])
    cluster.client.publish(chatty_package(tmp_path, "Often", lines=1))
    ids = []
    for _ in range(3):
        ids.append(cluster.client.call("Deploy", name="Often").id)
        assert cluster.client.call("Undeploy", name="Often") == 1
    reply = cluster.client.call("GetLogs", name="Often")
    assert [(log.deployment, log.state) for log in reply.log] == [
        (ids[1], "undeployed"),
        (ids[2], "undeployed"),
    ]
    assert all(log.host == cluster.hps[0].url and log.ended for log in reply.log)
    kept = sorted(p.name for p in (cluster.work / "hp1" / "logs").iterdir())
    assert kept == sorted(ids[1:])


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_get_logs_on_the_wire(make_cluster: MakeCluster, tmp_path: Path, version: str) -> None:
    cluster = make_cluster(hps=[[]])
    cluster.client.publish(chatty_package(tmp_path, "Wire", lines=1))
    echo = new_client(cluster.service_url("Wire") + "?wsdl", timeout=60).service
    assert echo.Echo(text="once") == "once"
    port = cluster.sp.url + "/dynasoar/ServiceProvider"
    action = f"{ns.DYN_SP}/GetLogs"

    def get_logs(body: str) -> Reply:
        headers, message_id = wsa_headers(to=port, action=action)
        reply = post(port, envelope(body, headers, version), version, soap_action=action)
        assert reply.text(".//wsa:RelatesTo") == message_id
        return reply

    reply = get_logs(
        f'<sp:GetLogs xmlns:sp="{ns.DYN_SP}"><sp:name>Wire</sp:name><sp:tail>1</sp:tail>'
        "</sp:GetLogs>"
    )
    assert reply.status == 200
    assert reply.text(".//wsa:Action") == f"{ns.DYN_SP}/GetLogsResponse"
    log = reply.xml.find(f".//{{{ns.DYN_SP}}}GetLogsResponse/{{{ns.DYN_SP}}}log")
    assert log is not None
    assert log.findtext(f"{{{ns.DYN}}}text") == "served call 000\n"
    assert log.findtext(f"{{{ns.DYN}}}host") == cluster.hps[0].url
    assert log.findtext(f"{{{ns.DYN}}}state") == "running"
    end = int(log.findtext(f"{{{ns.DYN}}}end") or -1)
    assert int(log.findtext(f"{{{ns.DYN}}}next") or -1) == end > 0

    # following from the end: nothing new yet, the same cursor back
    deployment = log.findtext(f"{{{ns.DYN}}}deployment")
    cursor = (
        f"<sp:cursor><d:deployment>{deployment}</d:deployment><d:offset>{end}</d:offset>"
        "</sp:cursor>"
    )
    reply = get_logs(
        f'<sp:GetLogs xmlns:sp="{ns.DYN_SP}" xmlns:d="{ns.DYN}"><sp:name>Wire</sp:name>'
        f"{cursor}</sp:GetLogs>"
    )
    assert reply.xml.findtext(f".//{{{ns.DYN}}}text") == ""
    assert reply.xml.findtext(f".//{{{ns.DYN}}}next") == str(end)

    sender = {"1.1": f"{{{ns.SOAP11_ENV}}}Client", "1.2": f"{{{ns.SOAP12_ENV}}}Sender"}[version]
    bad = get_logs(
        f'<sp:GetLogs xmlns:sp="{ns.DYN_SP}"><sp:name>Wire</sp:name><sp:tail>-1</sp:tail>'
        "</sp:GetLogs>"
    )
    assert bad.fault_codes() == [sender, f"{{{ns.DYN}}}InvalidRequest"]
    unknown = get_logs(f'<sp:GetLogs xmlns:sp="{ns.DYN_SP}"><sp:name>Nope</sp:name></sp:GetLogs>')
    assert unknown.fault_codes() == [sender, f"{{{ns.DYN}}}UnknownService"]


@pytest.mark.parametrize("soap12", [False, True], ids=["soap11", "soap12"])
def test_the_hosts_get_logs_through_its_served_wsdl(
    make_cluster: MakeCluster, tmp_path: Path, soap12: bool
) -> None:
    cluster = make_cluster(hps=[[]])
    cluster.client.publish(chatty_package(tmp_path, "Direct", lines=1))
    deployment = cluster.client.call("Deploy", name="Direct")
    client = zeep.Client(cluster.hps[0].url + "/dynasoar/HostProvider?wsdl")
    binding = "HostProviderSoap12Binding" if soap12 else "HostProviderSoap11Binding"
    hp = client.create_service(f"{{{ns.DYN_HP}}}{binding}", cluster.hps[0].url + HOST_PORT)
    (log,) = hp.GetLogs(service="Direct", deployment=deployment.id)
    assert (log.deployment, log.service, log.state) == (deployment.id, "Direct", "running")
    assert log.host is None and log.first == log.start == 0 and log.next == log.end
    assert hp.GetLogs(service="Direct", deployment="someone-else") == []


RAISER = '''
"""Echo, failing on "boom"."""
import echo_service


def check(body):
    if b"boom" in body:
        raise ValueError("boom asked for")


def application(environ, start_response):
    import io
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    check(body)
    environ["wsgi.input"] = io.BytesIO(body)
    return echo_service.application(environ, start_response)
'''


def test_an_exception_while_serving_is_logged_in_the_packages_terms(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    cluster = make_cluster(hps=[[]])
    package = make_package(tmp_path, "echo", "Raiser")
    (package / "raiser.py").write_text(RAISER)
    manifest = package / "dynasoar.toml"
    manifest.write_text(
        manifest.read_text().replace("echo_service:application", "raiser:application")
    )
    cluster.client.publish(package)
    echo = new_client(cluster.service_url("Raiser") + "?wsdl", timeout=60).service
    assert echo.Echo(text="fine") == "fine"
    with pytest.raises(zeep.exceptions.TransportError, match="500"):  # waitress's own answer
        echo.Echo(text="boom")
    (log,) = cluster.client.call("GetLogs", name="Raiser").log
    assert 'File "raiser.py", line 14, in application\n    check(body)\n' in log.text
    assert 'File "raiser.py", line 8, in check\n' in log.text
    assert "ValueError: boom asked for" in log.text
    assert "site-packages" not in log.text and sys.prefix not in log.text


DIES = '''
"""Echo, exiting when asked to "die"."""
import io, os, sys

import echo_service


def application(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    if b"die" in body:
        print("dying now", flush=True)
        os._exit(3)
    environ["wsgi.input"] = io.BytesIO(body)
    return echo_service.application(environ, start_response)
'''


def test_the_log_of_a_service_that_died_is_kept(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(hps=[[]])
    package = make_package(tmp_path, "echo", "Mortal")
    (package / "mortal.py").write_text(DIES)
    manifest = package / "dynasoar.toml"
    manifest.write_text(
        manifest.read_text().replace("echo_service:application", "mortal:application")
    )
    cluster.client.publish(package)
    deployment = cluster.client.call("Deploy", name="Mortal")
    hp = zeep.Client(cluster.hps[0].url + HOST_PORT + "?wsdl").service
    with pytest.raises(zeep.exceptions.Fault):  # the SP's fault: the deployment went away
        new_client(cluster.service_url("Mortal") + "?wsdl", timeout=60).service.Echo(text="die")
    wait_for(lambda: hp.List() == [], what="the host to notice the service died")
    (log,) = cluster.client.call("GetLogs", name="Mortal", deployment=deployment.id).log
    assert log.state == "exited" and log.text.endswith("\ndying now\n")
