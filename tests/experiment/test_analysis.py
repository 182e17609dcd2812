"""The model and its check on made-up calls (no network needed)."""

from __future__ import annotations

import math

import pytest

from dynasoar.experiment.analysis import analyse, as_calls
from dynasoar.experiment.results import Call

MIB = 1 << 20
GOODPUT = {"p": 8e6}  # a megabyte a second: 1 MiB more costs 1.048576 s more


def _sequence(
    strategy: str, seq: int, g: int, times: list[float], op: str = "Compute", size: int = MIB
) -> list[Call]:
    return [
        Call("p", strategy, size, size if strategy == "job" or i == 0 else 0, op, g, seq, i + 1,
             strategy == "job" or i == 0, t)
        for i, t in enumerate(times)
    ]  # fmt: skip


def test_break_even_of_a_deployment_against_the_job_model() -> None:
    # job: 1.0 s a call; code: deploys in 2.5 s (cold 2.6 = D + 0.1), then 0.1 s a call
    calls = _sequence("job", 1, 10, [1.0, 1.0])
    calls += _sequence("code", 2, 10, [2.6, 0.1, 0.1, 0.1, 0.1])
    analysis = analyse(calls, (10,), GOODPUT)
    code = analysis.at("p", "code", MIB, 10)
    assert code is not None
    assert code.deploy == pytest.approx(2.5)
    assert code.per_call == pytest.approx(0.1)
    assert code.nstar == pytest.approx(2.5 / 0.9)
    # running totals: code 2.6, 2.7, 2.8, 2.9 against job 1, 2, 3 (from then on: the job mean)
    assert code.crossing == 3
    model = analysis.model("p", "code")
    assert model is not None
    assert model.nstar(MIB, 10) == pytest.approx(2.5 / 0.9)
    assert as_calls(model.nstar(MIB, 10)) == 3
    assert model.total(MIB, 10, 10) == pytest.approx(2.5 + 1.0)
    assert analysis.disagreements == []


def test_the_model_extrapolates_size_and_granularity_from_its_anchor() -> None:
    calls = _sequence("job", 1, 1, [1.0])
    calls += _sequence("code", 2, 1, [2.1, 0.1, 0.1])
    analysis = analyse(calls, (1,), GOODPUT)
    job, code = analysis.model("p", "job"), analysis.model("p", "code")
    assert job is not None and code is not None
    transfer = 3 * MIB * 8 / 8e6  # 3 MiB more at 8 Mbit/s
    assert job.per_call_at(4 * MIB, 101) == pytest.approx(1.0 + transfer + 0.1)
    assert code.deploy_at(4 * MIB) == pytest.approx(2.0 + transfer)
    assert code.per_call_at(4 * MIB, 101) == pytest.approx(0.2)  # a warm call ships nothing
    # the compute cancels out of the break-even: only the shipping matters
    assert code.nstar(4 * MIB, 1) == pytest.approx(code.nstar(4 * MIB, 1000))
    assert code.nstar(4 * MIB, 1) == pytest.approx((2.0 + transfer) / (0.9 + transfer))


def test_a_deployment_that_never_pays_off() -> None:
    calls = _sequence("job", 1, 1, [0.5])
    calls += _sequence("code", 2, 1, [3.0, 0.6, 0.6, 0.6])
    analysis = analyse(calls, (1,), GOODPUT)
    point = analysis.at("p", "code", MIB, 1)
    assert point is not None and point.nstar is not None
    assert math.isinf(point.nstar)
    assert point.crossing is None
    assert as_calls(point.nstar) is None


def test_vm_calls_get_the_granularity_added() -> None:
    calls = _sequence("job", 1, 100, [1.2, 1.2])
    calls += _sequence("vm-overlay", 2, 0, [5.05, 0.05, 0.05, 0.05], op="Echo")
    point = analyse(calls, (100,), GOODPUT).at("p", "vm-overlay", MIB, 100)
    assert point is not None
    assert point.per_call == pytest.approx(0.15)
    assert point.nstar == pytest.approx(5.0 / 1.05)
    assert point.cumulative[0] == pytest.approx(5.15)


def test_a_disagreement_of_more_than_a_fifth_is_reported() -> None:
    # at 2 MiB the job takes 1.5 s longer than the anchor, where the model (8 Mbit/s) says
    # 1.05 s: T(1) is off by more than a fifth, and so is n*
    calls = _sequence("job", 1, 1, [1.0]) + _sequence("job", 2, 1, [3.5], size=2 * MIB)
    calls += _sequence("code", 3, 1, [2.1, 0.1, 0.1])
    calls += _sequence("code", 4, 1, [3.15, 0.1, 0.1], size=2 * MIB)
    notes = analyse(calls, (1,), GOODPUT).disagreements
    assert any("job 2 MiB" in n and "T(1)" in n for n in notes)
    assert not any("code 2 MiB" in n and "T(" in n for n in notes)
