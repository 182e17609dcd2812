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


def test_a_snapshot_held_at_the_host_ships_nothing_whatever_the_size() -> None:
    calls = _sequence("job", 1, 1, [1.0])
    calls += _sequence("vm-snap", 2, 1, [0.9, 0.1, 0.1])
    analysis = analyse(calls, (1,), GOODPUT)
    snap = analysis.model("p", "vm-snap")
    assert snap is not None
    transfer = 3 * MIB * 8 / 8e6
    assert snap.deploy_at(4 * MIB) == pytest.approx(0.8)  # restored: nothing travelled
    assert snap.nstar(4 * MIB, 1) == pytest.approx(0.8 / (0.9 + transfer))


def test_a_deployment_that_never_pays_off() -> None:
    calls = _sequence("job", 1, 1, [0.5])
    calls += _sequence("code", 2, 1, [3.0, 0.6, 0.6, 0.6])
    analysis = analyse(calls, (1,), GOODPUT)
    point = analysis.at("p", "code", MIB, 1)
    assert point is not None and point.nstar is not None
    assert math.isinf(point.nstar)
    assert point.crossing is None
    assert as_calls(point.nstar) is None


def test_a_vm_deployment_measures_d_once_and_t_x_at_every_granularity() -> None:
    # one deployment: Compute(10) cold (D = 5.0) and warm, then warm stints at 1 and 1000 ms
    calls = _sequence("job", 1, 1, [1.1, 1.1]) + _sequence("job", 2, 10, [1.2, 1.2])
    calls += _sequence("job", 3, 1000, [2.2, 2.2])
    durations = [(10, 5.06), (10, 0.06), (10, 0.06), (1, 0.05), (1, 0.05), (1000, 1.05)]
    calls += [
        Call("p", "vm-overlay", MIB, MIB if i == 0 else 0, "Compute", g, 4, i + 1, i == 0, t)
        for i, (g, t) in enumerate(durations)
    ]
    analysis = analyse(calls, (1, 10, 1000), GOODPUT)
    at = {g: analysis.at("p", "vm-overlay", MIB, g) for g in (1, 10, 1000)}
    assert all(m is not None for m in at.values())
    assert [m.deploy for m in at.values() if m is not None] == [pytest.approx(5.0)] * 3
    assert [m.per_call for m in at.values() if m is not None] == [
        pytest.approx(0.05), pytest.approx(0.06), pytest.approx(1.05)
    ]  # fmt: skip
    reference, short, slow = at[10], at[1], at[1000]
    assert reference is not None and short is not None and slow is not None
    # the reference stint is the real sequence from the cold call: 5.06, 5.12, 5.18 against
    # the job's 1.2, 2.4, 3.6, ... : met at n = 5 (5.30 <= 6.0), beyond its 3 calls
    assert reference.cumulative == pytest.approx((5.06, 5.12, 5.18))
    assert (reference.crossing, reference.projected) == (None, False)
    # a further stint is D plus its own calls, carried on with its mean: 5.05 + 0.05 (n - 1)
    assert short.cumulative == pytest.approx((5.05, 5.10))
    assert short.shipped == MIB  # what its deployment shipped
    assert (short.crossing, short.projected) == (5, True)  # 5.25 <= 5.5
    assert short.nstar == pytest.approx(5.0 / 1.05)
    assert (slow.crossing, slow.projected) == (5, True)  # 5.0 + 5 x 1.05 <= 5 x 2.2
    assert slow.nstar == pytest.approx(5.0 / 1.15)


def test_a_disagreement_of_more_than_a_fifth_is_reported() -> None:
    # at 2 MiB the job takes 1.5 s longer than the anchor, where the model (8 Mbit/s) says
    # 1.05 s: T(1) is off by more than a fifth, and so is n*
    calls = _sequence("job", 1, 1, [1.0]) + _sequence("job", 2, 1, [3.5], size=2 * MIB)
    calls += _sequence("code", 3, 1, [2.1, 0.1, 0.1])
    calls += _sequence("code", 4, 1, [3.15, 0.1, 0.1], size=2 * MIB)
    notes = analyse(calls, (1,), GOODPUT).disagreements
    assert any("job 2 MiB" in n and "T(1)" in n for n in notes)
    assert not any("code 2 MiB" in n and "T(" in n for n in notes)
