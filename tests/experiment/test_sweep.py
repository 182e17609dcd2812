"""A tiny sweep end to end: one profile, a small code package, the job model and dynasoar's code
deployment at two granularities; and (make soak, when libvirt is here) the same with the VM
strategies: one boot of a whole image (Compute at both granularities in the guest), and a
package's snapshot restored where it was taken and shipped to a host restarted empty."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from dynasoar.experiment import run_grid
from dynasoar.experiment.grid import MIB, TINY
from dynasoar.experiment.hypervisor import libvirt_available
from dynasoar.experiment.netns import ours, pids_in
from dynasoar.experiment.packages import vm_available
from dynasoar.experiment.results import Call

from .conftest import needs_network

pytestmark = needs_network
VM = libvirt_available() and vm_available()

COLUMNS = [
    "profile", "strategy", "size_bytes", "shipped_bytes", "operation", "granularity_ms",
    "sequence", "call", "cold", "seconds", "job_deploy_s", "job_call_s", "job_undeploy_s", "load1",
]  # fmt: skip


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("experiment")
    return out, run_grid(TINY, out)


def test_the_sweep_succeeds_and_writes_its_files(sweep: tuple[Path, int]) -> None:
    out, status = sweep
    assert status == 0
    for name in ("runs.csv", "network.csv", "points.csv", "summary.txt"):
        assert (out / name).is_file(), name
    for name in ("totals.png", "nstar_granularity.png", "nstar_size.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_every_call_is_a_row_with_the_expected_columns(sweep: tuple[Path, int]) -> None:
    out, _ = sweep
    with (out / "runs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS
    assert {r["strategy"] for r in rows} == {"job", "code"}
    for g in TINY.granularities:
        jobs = [r for r in rows if r["strategy"] == "job" and r["granularity_ms"] == str(g)]
        assert len(jobs) == TINY.job_calls
        assert all(r["cold"] == "1" and float(r["job_deploy_s"]) > 0 for r in jobs)
        code = [r for r in rows if r["strategy"] == "code" and r["granularity_ms"] == str(g)]
        assert code[0]["cold"] == "1" and int(code[0]["shipped_bytes"]) >= MIB
        assert [r["cold"] for r in code[1:]] == ["0"] * (len(code) - 1)
        assert len(code) >= TINY.warm_calls + 1
        # Compute(g) burns g ms of CPU: no warm call can be quicker
        assert all(float(r["seconds"]) >= g / 1000 for r in code)


@pytest.mark.soak  # make test: the code strategies (the sweep above)
@pytest.mark.skipif(not VM, reason="libvirt and the VM guest images are needed")
def test_the_vm_strategies_run_in_a_sweep(tmp_path: Path) -> None:
    """vm-full on a fresh Host Provider; then a snapshot restored where it was taken, and one
    shipped to a host restarted empty."""
    strategies = (*TINY.strategies, "vm-full", "vm-snap", "vm-snap-ship")
    assert run_grid(replace(TINY, strategies=strategies, vm_full_sizes=(MIB,)), tmp_path) == 0
    with (tmp_path / "runs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["strategy"] for r in rows} == set(strategies)
    # one deployment: a cold call, then Compute at every granularity in the guest
    vm = [r for r in rows if r["strategy"] == "vm-full"]
    assert {r["sequence"] for r in vm} == {vm[0]["sequence"]}
    assert [r["cold"] for r in vm] == ["1"] + ["0"] * (len(vm) - 1)
    assert {r["operation"] for r in vm} == {"Compute"}
    assert {int(r["granularity_ms"]) for r in vm} == set(TINY.granularities)
    assert vm[0]["granularity_ms"] == str(TINY.reference_granularity)
    assert all(float(r["seconds"]) >= int(r["granularity_ms"]) / 1000 for r in vm)
    # restored where the snapshot was taken: nothing shipped; to a host that held nothing:
    # the images and the snapshot (tens of MiB of memory state) beyond vm-full's image
    snap = [r for r in rows if r["strategy"] == "vm-snap"]
    ship = [r for r in rows if r["strategy"] == "vm-snap-ship"]
    assert snap[0]["cold"] == "1" and int(snap[0]["shipped_bytes"]) == 0
    assert ship[0]["cold"] == "1"
    assert int(ship[0]["shipped_bytes"]) > int(vm[0]["shipped_bytes"]) + 8 * MIB


def test_the_model_finds_the_code_deployment_pays_off_at_once(sweep: tuple[Path, int]) -> None:
    out, _ = sweep
    with (out / "points.csv").open() as f:
        points = [r for r in csv.DictReader(f) if r["strategy"] == "code"]
    assert len(points) == len(TINY.granularities)
    for p in points:
        assert float(p["deploy_s"]) > 0
        assert float(p["per_call_s"]) < float(p["job_per_call_s"])
        assert float(p["nstar_model"]) < 3
        assert p["nstar_measured"] in ("1", "2", "3")
    summary = (out / "summary.txt").read_text()
    assert "Model vs measurement" in summary and "100M-10ms" in summary


def test_the_link_was_calibrated(sweep: tuple[Path, int]) -> None:
    out, _ = sweep
    with (out / "network.csv").open() as f:
        (link,) = list(csv.DictReader(f))
    assert 9.5 < float(link["measured_rtt_ms"]) < 15
    assert 50 < float(link["measured_goodput_mbit"]) <= 101


def test_call_rows_read_back(sweep: tuple[Path, int]) -> None:
    from dynasoar.experiment.results import read_calls

    out, _ = sweep
    calls = read_calls(out / "runs.csv")
    assert calls and all(isinstance(c, Call) for c in calls)


SWEEP = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from dynasoar.experiment import run_grid
    from dynasoar.experiment.grid import TINY
    sys.exit(run_grid(TINY, Path(sys.argv[1])))
    """
)


@pytest.mark.parametrize("signum", [signal.SIGINT])
def test_a_signal_mid_sweep_stops_it_and_tears_everything_down(signum: int, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SWEEP, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # the link is calibrated: actors are up, calls begin
    assert "measured RTT" in line, line + (process.stderr.read() if process.stderr else "")
    time.sleep(1.0)
    namespaces = ours(process.pid)
    inside = [pid for ns in namespaces for pid in pids_in(ns)]
    assert len(namespaces) == 2 and len(inside) >= 4  # SP, HP, two delay processes
    process.send_signal(signum)
    process.communicate(timeout=30)
    assert process.returncode != 0
    assert ours(process.pid) == []
    assert not [pid for pid in inside if Path(f"/proc/{pid}").exists()]
    assert (tmp_path / "runs.csv").is_file()  # what was measured is kept
