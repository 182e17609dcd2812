"""The Dynasoar experiment (``dynasoar bench experiment``): when does shipping a service once
beat shipping its code with every request (the job model), and when does shipping a whole VM
beat shipping code — measured over an emulated network, swept over compute granularity,
service size, bandwidth/latency and number of calls. docs/experiment.md has the method and the
results.

The pieces, from the bottom: netns (namespaces, veth links), shaping + delay (bandwidth and
latency), probe (link calibration), hypervisor (a libvirt of the Host Provider's own), testbed
(SP and HP on the network), packages (the service at a size), calls (timed calls, job model),
grid (what is swept), runner (the sweep), analysis (model and check), summary and plots."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from dynasoar.experiment.grid import FULL, QUICK, VM_STRATEGIES, Grid
from dynasoar.experiment.hypervisor import libvirt_available
from dynasoar.experiment.packages import vm_available
from dynasoar.experiment.results import Call, LinkMeasure, read_calls, read_links, write_csv

__all__ = [
    "FULL",
    "QUICK",
    "Grid",
    "check_environment",
    "report_again",
    "run_experiment",
    "run_grid",
]

DEFAULT_OUT = Path("build") / "experiment"


def check_environment() -> str | None:
    """Why the experiment cannot run here, or None."""
    if os.geteuid() != 0:
        return "it needs root (network namespaces, tc, iptables)"
    missing = [tool for tool in ("ip", "tc", "iptables") if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (scripts/install-system.sh installs them)"
    return None


def run_grid(grid: Grid, out: Path) -> int:
    """Run ``grid``; write runs.csv, network.csv, points.csv, the plots and summary.txt to
    ``out``; print the summary. 0 when every point was measured."""
    from dynasoar.experiment.progress import Progress
    from dynasoar.experiment.runner import Sweep

    problem = check_environment()
    if problem is not None:
        print(f"dynasoar bench experiment: {problem}", file=sys.stderr)
        return 2
    vm = VM_STRATEGIES
    if any(grid.runs(s) for s in vm) and not (libvirt_available() and vm_available()):
        print("note: no libvirt/QEMU or no vm-echo build (make vm-image): VM strategies skipped")
        grid = _without(grid, vm)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    progress = Progress(grid.steps())
    work = Path(tempfile.mkdtemp(prefix="dynasoar-experiment-"))
    sweep = Sweep(grid, work, progress)
    complete = False
    try:
        sweep.run()
        complete = not sweep.failures
    finally:
        progress.close()
        write_csv(out / "runs.csv", sweep.calls, Call)
        write_csv(out / "network.csv", sweep.links, LinkMeasure)
        kept = work / "kept-logs"
        if kept.is_dir() and not complete:  # the actors' logs, to see what went wrong
            shutil.copytree(kept, out / "logs", dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    report(
        grid,
        out,
        sweep.calls,
        sweep.links,
        sweep.skipped,
        sweep.failures,
        time.monotonic() - started,
    )
    return 1 if sweep.failures else 0


def report(
    grid: Grid,
    out: Path,
    calls: list[Call],
    links: list[LinkMeasure],
    skipped: list[str],
    failures: list[str],
    elapsed: float,
) -> None:
    """Analyse the calls; write points.csv, the plots and summary.txt; print the summary."""
    from dynasoar.experiment import plots
    from dynasoar.experiment.analysis import analyse
    from dynasoar.experiment.summary import summary, write_points

    goodput = {link.profile: link.measured_goodput_mbit * 1e6 for link in links}
    analysis = analyse(calls, grid.granularities, goodput)
    write_points(analysis, out / "points.csv")
    figures = plots.draw_all(analysis, grid, out)
    text = summary(analysis, grid, links, skipped, failures, elapsed)
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    print(f"\nwritten: {', '.join(str(p) for p in [out / 'runs.csv', *figures])}")


def report_again(grid: Grid, out: Path) -> None:
    """The report of an earlier run, from its runs.csv and network.csv (after changing the
    analysis or the plots)."""
    calls = read_calls(out / "runs.csv")
    report(grid, out, calls, read_links(out / "network.csv"), [], [], 0.0)


def run_experiment(quick: bool = False, out: Path | None = None) -> int:
    return run_grid(QUICK if quick else FULL, out or DEFAULT_OUT)


def _without(grid: Grid, strategies: tuple[str, ...]) -> Grid:
    from dataclasses import replace

    return replace(grid, strategies=tuple(s for s in grid.strategies if s not in strategies))
