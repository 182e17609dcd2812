"""``dynasoar bench``: the benchmarks, each printed as ratios of figures measured side by side
in the same run (never absolute targets: these machines are shared and noisy).
``dynasoar bench experiment`` runs the Dynasoar experiment instead (dynasoar.experiment)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from dynasoar.bench.cold import cold_start
from dynasoar.bench.fleet import fleet_bench
from dynasoar.bench.mobility import move_under_load
from dynasoar.bench.mtom import image_transfer
from dynasoar.bench.relay import warm_relay
from dynasoar.bench.restart import restart_under_load
from dynasoar.bench.signatures import signature_cost
from dynasoar.bench.snapshots import restore_vs_boot, shipped_snapshot
from dynasoar.bench.vm import image_deploy


def run_bench(
    quick: bool = False, which: str | None = None, out: Path | None = None, hosts: int = 1000
) -> int:
    if which == "fleet":
        from dynasoar.bench.fleet import run_fleet

        return run_fleet(hosts, out, quick)
    if which == "experiment":
        from dynasoar.experiment import run_experiment

        return run_experiment(quick=quick, out=out)
    with tempfile.TemporaryDirectory(prefix="dynasoar-bench-") as tmp:
        work = Path(tmp)
        print("dynasoar bench" + (" (quick)" if quick else ""), flush=True)
        warm_relay(work / "relay", duration=2.0 if quick else 5.0, rounds=1 if quick else 3)
        signature_cost(work / "signatures", messages=500 if quick else 2000)
        restart_under_load(work / "restart", restarts=1 if quick else 3)
        cold_start(work / "cold", rounds=2 if quick else 5)
        image_transfer(work / "image", size=(256 if quick else 2048) << 20, rounds=2)
        image_deploy(work / "deploy", size=(256 if quick else 2048) << 20)
        restore_vs_boot(work / "boot", rounds=1 if quick else 3)
        shipped_snapshot(work / "ship")
        move_under_load(work / "move")
        fleet_bench(work / "fleet", sizes=(3, 1000) if quick else (3, 1000, 10000), quick=quick)
    return 0
