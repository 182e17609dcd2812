"""The ``dynasoar`` client commands against real processes, as a user runs them."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from dynasoar.paths import samples_dir

from .conftest import Cluster, make_package


def dynasoar(
    *args: str, ok: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "dynasoar", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def test_publish_deploy_call_status_undeploy(cluster: Cluster) -> None:
    sp = cluster.sp.url
    published = dynasoar("publish", str(samples_dir() / "counter"), "--sp", sp)
    assert "published Counter 1.0" in published.stdout

    status = json.loads(dynasoar("status", "--sp", sp, "--json").stdout)
    assert [s["name"] for s in status["services"]] == ["Counter"]
    assert status["deployments"] == []
    assert {h["address"] for h in status["hosts"]} == {hp.url for hp in cluster.hps}

    target = cluster.hps[1].url
    deployed = dynasoar("deploy", "Counter", "--sp", sp, "--hp", target)
    assert f"deployed on {target}" in deployed.stdout

    wsdl = f"{sp}/services/Counter?wsdl"
    assert dynasoar("call", wsdl, "Increment").stdout.strip() == "1"
    second = dynasoar("call", wsdl, "Increment", "--soap12")
    assert second.stdout.strip() == "2"
    assert f"via {target}" in second.stderr

    table = dynasoar("status", "--sp", sp).stdout
    assert "Counter" in table and target in table

    assert "1 deployment undeployed" in dynasoar("undeploy", "Counter", "--sp", sp).stdout
    status = json.loads(dynasoar("status", "--sp", sp, "--json").stdout)
    assert status["deployments"] == []


def test_errors_are_one_line_and_exit_1(cluster: Cluster) -> None:
    result = dynasoar("deploy", "Nope", "--sp", cluster.sp.url, ok=False)
    assert result.returncode == 1
    assert "Nope" in result.stderr and "Traceback" not in result.stderr

    result = dynasoar("call", f"{cluster.sp.url}/services/Echo?wsdl", "Echo", ok=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_stateful_service_is_not_replicated(cluster: Cluster) -> None:
    sp = cluster.sp.url
    dynasoar("publish", str(samples_dir() / "counter"), "--sp", sp)
    dynasoar("deploy", "Counter", "--sp", sp, "--hp", cluster.hps[0].url)
    refused = dynasoar("deploy", "Counter", "--sp", sp, "--hp", cluster.hps[1].url, ok=False)
    assert refused.returncode == 1 and "stateful" in refused.stderr


def test_status_json_has_a_schema(cluster: Cluster, tmp_path: Path) -> None:
    sp = cluster.sp.url
    dynasoar("publish", str(samples_dir() / "echo"), "--sp", sp)
    dynasoar("deploy", "Echo", "--sp", sp, "--hp", cluster.hps[0].url)
    status = json.loads(dynasoar("status", "--sp", sp, "--json").stdout)
    assert status["apiVersion"] == "dynasoar.status/v1"
    assert status["serviceProvider"] == sp
    assert set(status) == {
        "apiVersion",
        "serviceProvider",
        "generated",
        "services",
        "deployments",
        "hosts",
    }
    (service,) = status["services"]
    (deployment,) = status["deployments"]
    assert (deployment["version"], deployment["sha256"]) == (service["version"], service["sha256"])
    assert deployment["state"] == "ready" and deployment["host"] == cluster.hps[0].url
    assert service["replicas"] == 1
    stamps = [status["generated"], service["published"], deployment["created"]]
    stamps += [deployment["changed"], deployment["lastUsed"]]
    for stamp in stamps:
        assert stamp.endswith("Z") and "T" in stamp, stamp
        assert datetime.fromisoformat(stamp).tzinfo is not None
    keys = {k for item in [status, service, deployment, *status["hosts"]] for k in item}
    assert all(re.fullmatch(r"[a-z][a-zA-Z0-9]*", k) for k in keys), keys  # camelCase only
    assert {h["address"] for h in status["hosts"]} == {hp.url for hp in cluster.hps}

    # Published again, kept but not rolled out: the running deployment still says what it
    # runs, the service which versions it has and which takes its traffic.
    newer = make_package(tmp_path, "echo")
    manifest = newer / "dynasoar.toml"
    manifest.write_text(manifest.read_text().replace('version = "1.0"', 'version = "1.1"', 1))
    dynasoar("publish", str(newer), "--no-rollout", "--sp", sp)
    status = json.loads(dynasoar("status", "--sp", sp, "--json").stdout)
    (service,) = status["services"]
    (still,) = status["deployments"]
    assert service["available"] == ["1.0", "1.1"]
    assert service["traffic"] == [{"version": "1.0", "percent": 100}]
    assert (still["version"], still["sha256"]) == ("1.0", deployment["sha256"])
    # Rolled out: the deployment that took over runs the new version's package.
    dynasoar("rollout", "Echo", "1.1", "--sp", sp)
    status = json.loads(dynasoar("status", "--sp", sp, "--json").stdout)
    (service,) = status["services"]
    (now,) = status["deployments"]
    assert (now["version"], now["sha256"]) == ("1.1", service["sha256"])
    assert now["sha256"] != deployment["sha256"]


def test_call_lists_sends_headers_and_shows_the_envelopes(cluster: Cluster) -> None:
    sp = cluster.sp.url
    dynasoar("publish", str(samples_dir() / "echo"), "--sp", sp)
    wsdl = f"{sp}/services/Echo?wsdl"
    listed = dynasoar("call", wsdl, "--list").stdout.splitlines()
    assert listed == [
        "Compute(millis: ns0:millis) -> iterations: xsd:long",
        "Echo(text: xsd:string) -> text: xsd:string",
    ]
    for target in (hp.url for hp in cluster.hps):
        preferred = (
            f'<dyn:PreferredHosts xmlns:dyn="urn:dynasoar:2006"><dyn:Host>{target}</dyn:Host>'
            "</dyn:PreferredHosts>"
        )
        routed = dynasoar("call", wsdl, "Echo", "text=here", "--header", preferred)
        assert routed.stdout.strip() == "here"
        assert f"via {target}" in routed.stderr
    raw = dynasoar("call", wsdl, "Echo", "text=raw", "--raw", "--soap12")
    sent, _, received = raw.stdout.partition("<!-- received -->")
    assert sent.startswith("<!-- sent -->") and "http://www.w3.org/2003/05/soap-envelope" in sent
    assert "<wsa:MessageID>" in sent.replace("ns0:", "wsa:") or "MessageID" in sent
    assert "RelatesTo" in received and ">raw<" in received
    bad = dynasoar("call", wsdl, "Echo", "text=x", "--header", "<unclosed>", ok=False)
    assert bad.returncode == 1 and "is not well-formed XML" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    slow = dynasoar("call", wsdl, "Compute", "millis=5000", "--timeout", "1", ok=False)
    assert slow.returncode == 1 and "Traceback" not in slow.stderr
    assert "timed out" in slow.stderr.lower() and len(slow.stderr.strip().splitlines()) == 1


def test_hp_wins_over_the_environment_and_a_missing_sp_is_one_line(cluster: Cluster) -> None:
    hp = cluster.hps[0].url
    env = {"DYNASOAR_SP": cluster.sp.url}
    deployed = dynasoar("deploy", str(samples_dir() / "echo"), "--hp", hp, env=env)
    assert f"deployed on {hp} as " in deployed.stdout
    not_a_path = dynasoar("deploy", "Echo", "--hp", hp, env=env, ok=False)
    assert "not a package on disk" in not_a_path.stderr and "add --sp URL" in not_a_path.stderr
    for command in (
        ["status"],
        ["publish", str(samples_dir() / "echo")],
        ["deploy", "Echo"],
        ["undeploy", "Echo"],
        ["logs", "Echo"],
    ):
        done = dynasoar(*command, env={"DYNASOAR_SP": "http://127.0.0.1:9"}, ok=False)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines() == [
            f"dynasoar {command[0]}: no Service Provider answers at http://127.0.0.1:9 "
            "(connection refused): start one (dynasoar sp), or point --sp or $DYNASOAR_SP at "
            "yours"
        ], done.stderr


def test_deploy_shows_its_phases_on_a_terminal_only(cluster: Cluster) -> None:
    sp = cluster.sp.url
    dynasoar("publish", str(samples_dir() / "echo"), "--sp", sp)
    quiet = dynasoar("deploy", "Echo", "--sp", sp)
    assert quiet.stderr == ""  # not a terminal: nothing drawn
    dynasoar("undeploy", "Echo", "--sp", sp)
    shown = on_a_terminal("deploy", "Echo", "--sp", sp)
    assert f"Echo: asking {sp} to deploy it" in shown
    assert "Echo: ready in " in shown and "s on http://127.0.0.1:" in shown
    direct = on_a_terminal("deploy", str(samples_dir() / "echo"), "--hp", cluster.hps[1].url)
    assert "echo: shipped " in direct and f"{cluster.hps[1].url} is starting it" in direct
    assert "echo: ready in " in direct


def on_a_terminal(*args: str) -> str:
    """What the command draws on stderr when stderr is a terminal (a pseudo-terminal here)."""
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "dynasoar", *args],
            stdout=subprocess.PIPE,
            stderr=slave,
            stdin=subprocess.DEVNULL,
        )
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal's other end closed: the command ended
                break
            if not chunk:
                break
            seen += chunk
        assert process.wait(timeout=120) == 0, seen
        assert process.stdout is not None
        process.stdout.close()
    finally:
        os.close(master)
    return seen.decode(errors="replace")


def test_the_help_is_plain_text_with_examples() -> None:
    top = dynasoar("--help").stdout
    assert "``" not in top and "examples:" in top
    for command in ("sp", "hp", "publish", "deploy", "undeploy", "status", "logs", "call"):
        text = dynasoar(command, "--help").stdout
        assert "examples:" in text, command
        assert "``" not in text, command
