"""Benchmark: restarting the SP under load. 16 consumers keep calling a deployed Echo while the
SP is restarted in place (SIGHUP: the listening socket is kept, the same command line exec'd)
three times; then, for comparison, stopped and started again by hand (SIGTERM, a new process on
the same port: connections made while no process listens are refused). Printed: messages, failed
messages (the goal for SIGHUP is 0) and the longest a call waited (the longest pause a client saw).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dynasoar.bench.cluster import BenchCluster
from dynasoar.bench.load import command
from dynasoar.bench.relay import BODY, ECHO_NS
from dynasoar.paths import samples_dir
from dynasoar.procs import start_actor

CONCURRENCY = 16


def _start_load(url: str, body: Path, duration: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(url, body, ECHO_NS + "/Echo", "payload", CONCURRENCY, duration, 0.0),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _result(load: subprocess.Popen[str], duration: float) -> dict[str, Any]:
    out, _ = load.communicate(timeout=duration + 120)
    result: dict[str, Any] = json.loads(out)
    return result


def _line(what: str, result: dict[str, Any]) -> str:
    kinds = ", ".join(result["error_kinds"]) or "none"
    return (
        f"  {what}: {result['requests']} messages answered, {result['errors']} failed "
        f"({kinds}), longest call {result['max']:.2f} s"
    )


def restart_under_load(work: Path, restarts: int = 3, spacing: float = 3.0) -> None:
    cluster = BenchCluster.start(work, hosts=2)
    try:
        cluster.client.publish(samples_dir() / "echo")
        cluster.client.call("Deploy", name="Echo")
        url = cluster.sp.url + "/services/Echo"
        body = work / "echo.xml"
        body.write_text(BODY.format(to=url, text="payload"))
        print(f"restarting the SP under load ({CONCURRENCY} consumers)", flush=True)

        duration = 2.0 + restarts * spacing + 2.0
        load = _start_load(url, body, duration)
        time.sleep(2.0)
        for _ in range(restarts):
            os.kill(cluster.sp.process.pid, signal.SIGHUP)
            time.sleep(spacing)
        hup = _result(load, duration)
        print(_line(f"{restarts} restarts in place (SIGHUP)", hup) + "  [goal: 0 failed]")

        port = str(urlsplit(cluster.sp.url).port)
        args = ["--port", port, "--data", str(work / "sp")]
        duration = 2.0 + spacing + 2.0
        load = _start_load(url, body, duration)
        time.sleep(2.0)
        cluster.sp.stop()
        cluster.sp = start_actor("sp", args, work / "sp-again.log")
        plain = _result(load, duration)
        print(_line("1 stop and start by hand (SIGTERM, new process)", plain))
    finally:
        cluster.stop()
