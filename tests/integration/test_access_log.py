"""Access lines as an operator reads them, from real SP and HP processes: one per message at the
SP (correlated by wsa:MessageID, or an id made up for a message without one, with the
deployment and host the reply names), one per control message at each port, JSON that parses,
and a consumer's mistakes logged as what they are (info, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from dynasoar.paths import samples_dir

from .conftest import Cluster, make_package, wait_for
from .wire import ECHO_ACTION, echo_body, envelope, post, wsa_headers

JSON = ["--log-format", "json"]


def entries(log: str) -> list[dict[str, Any]]:
    """Every line of a JSON log (each must parse)."""
    return [json.loads(line) for line in log.splitlines() if line.strip()]


def access_lines(log: str) -> list[dict[str, Any]]:
    return [e for e in entries(log) if e["logger"] == "dynasoar.access"]


def test_one_access_line_per_message_correlated_with_the_reply(make_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster: Cluster = make_cluster(sp_args=JSON, hps=[JSON])
    cluster.client.publish(samples_dir() / "echo")
    url = cluster.service_url("Echo")
    sent = []
    for version in ("1.1", "1.2", "1.1"):
        headers, message_id = wsa_headers(to=url, action=ECHO_ACTION)
        body = envelope(echo_body(f"hi {version}"), headers, version=version)
        reply = post(url, body, version=version, soap_action=ECHO_ACTION)
        assert reply.status == 200
        sent.append((message_id, version, len(body), reply))
    plain = envelope(echo_body("no addressing"))
    plain_reply = post(url, plain, soap_action=ECHO_ACTION)
    assert plain_reply.status == 200

    def logged() -> list[dict[str, Any]]:
        return [e for e in access_lines(cluster.sp.log()) if e.get("service") == "Echo"]

    wait_for(lambda: len(logged()) == 4, what="4 access lines")
    lines = logged()
    for (message_id, version, size, reply), line in zip(sent, lines, strict=False):
        assert line["id"] == message_id
        assert line["soap"] == version
        assert line["status"] == 200 and line["fault"] is None
        assert line["version"] == "1.0"
        assert line["deployment"] == reply.headers["x-dynasoar-deployment"]
        assert line["host"] == reply.headers["x-dynasoar-host"]
        assert line["cold"] == (reply.headers["x-dynasoar-cold"] == "1")
        assert line["in"] == size and line["out"] == len(reply.body)
        assert line["ms"] > 0 and line["level"] == "info" and line["client"] == "127.0.0.1"
    assert [line["cold"] for line in lines] == [True, False, False, False]
    made_up = lines[3]
    assert made_up["id"].startswith("dyn-") and made_up["out"] == len(plain_reply.body)

    # The HP wrote one line per control message, the Deploy among them.
    hp_lines = access_lines(cluster.hps[0].log())
    deploys = [e for e in hp_lines if e["op"] == "Deploy"]
    assert len(deploys) == 1 and deploys[0]["status"] == 200 and deploys[0]["fault"] is None
    assert deploys[0]["id"].startswith("urn:uuid:") and deploys[0]["soap"] == "1.2"


def test_a_consumers_mistakes_are_info_lines_without_tracebacks(make_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster: Cluster = make_cluster(sp_args=["-v"], hps=[()])
    sp = cluster.sp.url
    forged = "urn:x &#10;2026-01-01 CRITICAL forged=1"
    headers, _ = wsa_headers(to=f"{sp}/services/Nope", action=ECHO_ACTION, message_id=forged)
    reply = post(f"{sp}/services/Nope", envelope(echo_body(), headers), soap_action=ECHO_ACTION)
    assert reply.status == 500
    refused = subprocess.run(
        [sys.executable, "-m", "dynasoar", "deploy", "Nope", "--sp", sp],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1

    def line_of(needle: str) -> str | None:
        return next((x for x in cluster.sp.log().splitlines() if needle in x), None)

    wait_for(lambda: line_of("op=Deploy") is not None, what="the Deploy's access line")
    log = cluster.sp.log()
    assert "Traceback" not in log and "CRITICAL" not in log.replace("CRITICAL forged", "")
    assert " ERROR " not in log
    unknown = line_of("fault=DestinationUnreachable")
    assert unknown is not None and " INFO dynasoar.access: " in unknown
    # The consumer's message id is quoted and escaped: still one line, no field forged.
    assert 'id="urn:x \\n2026-01-01 CRITICAL forged=1"' in unknown
    assert not any(x.startswith("2026-01-01 CRITICAL") for x in log.splitlines())
    deploy = line_of("op=Deploy")
    assert deploy is not None and "fault=UnknownService" in deploy and " INFO " in deploy
    # -v: dynasoar's debug lines, none of the libraries' (spyne, zeep)
    assert " DEBUG dynasoar." in log
    assert not any(x.split(" ")[2].startswith(("spyne", "zeep")) for x in log.splitlines() if x)


def test_the_sps_own_failures_are_warnings(make_cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cluster: Cluster = make_cluster(sp_args=JSON, hps=[()])
    broken = make_package(tmp_path, "echo", name="Broken")
    (broken / "echo_service.py").write_text("def broken(:\n")
    cluster.client.publish(broken)
    url = cluster.service_url("Broken")
    headers, message_id = wsa_headers(to=url, action=ECHO_ACTION)
    assert post(url, envelope(echo_body(), headers), soap_action=ECHO_ACTION).status == 500
    wait_for(lambda: any(e["id"] == message_id for e in access_lines(cluster.sp.log())))
    (line,) = [e for e in access_lines(cluster.sp.log()) if e["id"] == message_id]
    assert (line["level"], line["fault"], line["service"]) == (
        "warning",
        "DeploymentFailed",
        "Broken",
    )
    assert line["cold"] is False and line["deployment"] is None


def test_heartbeats_are_debug_lines(make_cluster) -> None:  # type: ignore[no-untyped-def]
    cluster: Cluster = make_cluster(sp_args=[], hps=[("--heartbeat", "0.2")])
    cluster.client.call("ListHosts")
    wait_for(lambda: "op=ListHosts" in cluster.sp.log(), what="the ListHosts line")
    assert "op=RegisterHost" not in cluster.sp.log()  # every 0.2 s, at debug level
    assert "op=Status" not in cluster.hps[0].log()
