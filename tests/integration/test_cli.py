"""The ``dynasoar`` client commands against real processes, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

from dynasoar.paths import samples_dir

from .conftest import Cluster


def dynasoar(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "dynasoar", *args], capture_output=True, text=True, timeout=120
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
