"""The sweep's own rules, without a network: when a sequence may stop, what is out of reach."""

from __future__ import annotations

import io
from pathlib import Path

from dynasoar.experiment.calls import crossed
from dynasoar.experiment.grid import QUICK, TINY
from dynasoar.experiment.progress import Progress
from dynasoar.experiment.runner import Sweep
from dynasoar.experiment.shaping import PROFILES


def test_a_sequence_stops_once_it_has_met_the_job_model_everywhere() -> None:
    done = crossed({1: [1.0, 1.0], 1000: [2.0]}, least=2)
    assert not done([2.5])  # fewer calls than asked for
    assert not done([2.5, 0.1])  # 2.6 > 2.0 at g=1
    assert done([2.5, 0.1, 0.1])  # 2.7 <= 3.0 at g=1; 2.6 <= 4.0 at g=1000


def test_a_vm_deploys_once_for_every_granularity(tmp_path: Path) -> None:
    # the reference granularity runs until the break-even; the others get a short warm stint
    sweep = Sweep(QUICK, tmp_path, Progress(10, io.StringIO()))
    stints = sweep._vm_stints({g: [1.0] for g in QUICK.granularities})
    assert [s.operation.millis for s in stints] == [10, 1, 100, 1000]
    assert [s.operation.name for s in stints] == ["Compute"] * 4
    first, *others = stints
    assert (first.least, first.most) == (QUICK.warm_calls + 1, QUICK.max_calls)
    assert all((s.least, s.most) == (QUICK.warm_calls + 1,) * 2 for s in others)


def test_transfers_the_sp_would_not_wait_for_are_skipped(tmp_path: Path) -> None:
    sweep = Sweep(TINY, tmp_path, Progress(10, io.StringIO()))
    slow, fast = PROFILES["10M-50ms"], PROFILES["1G-1ms"]
    assert sweep._beyond_reach("x", slow, 256 << 20, 1)
    assert not sweep._beyond_reach("x", fast, 256 << 20, 1)
    assert not sweep._beyond_reach("x", slow, 64 << 20, 1)
    assert len(sweep.skipped) == 1 and "256 MiB" in sweep.skipped[0]


def test_the_quick_grid_counts_its_steps() -> None:
    # per profile: 3 sizes x (2 jobs x 4 granularities + 4 code sequences) + vm-full once
    # + vm-overlay per size + vm-snap per size + vm-snap-ship once, + the calibration
    assert QUICK.steps() == 3 * (3 * (8 + 4) + 1 + 3 + 3 + 1 + 1)
