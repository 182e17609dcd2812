"""From the recorded calls to what they say, and to the model they are checked against.

Measured, per (profile, strategy, size, granularity g):

- the job model costs ``t_ship`` per call (median of its jobs: ship, start, call, undeploy);
- a deployed strategy X costs ``D`` once (a sequence's cold call minus the median warm call at
  its granularity; for code the median over that size's sequences, one per granularity; a VM is
  deployed once per size, so its D is that deployment's) and ``t_X(g)`` per call (the median
  warm Compute(g) call);
- the break-even seen in the real sequences: the first ``n`` at which X's running total, cold
  call included, is at most the job model's (its sequence, extended by its mean beyond its
  length: jobs are independent of each other). A VM's warm stint at a further granularity
  (made on the deployment of its reference granularity) has no cold call of its own: its
  running total is D plus its calls, and it is extended by its mean warm call beyond them
  (``projected``), as the job model's is.

A recorded sequence is split into stints of one granularity each (a VM's sequence has one per
granularity; a code sequence and a job-model sequence are one stint).

The model, per (profile, strategy), is anchored at the smallest size and granularity measured
and predicts every other point from the link's measured goodput B: moving ``S`` more bytes
costs ``8 S / B`` more in D and in t_ship (not in vm-snap's D: its host holds the package and
its snapshot, nothing travels), and ``g`` more CPU costs ``g`` more per call, on every
strategy. So ``T_X(n) = D(S) + n t_X(g)``, ``T_job(n) = n t_ship(S, g)`` and

    n* = D(S) / (t_ship(S, g) - t_X(g))        (never, when a deployed call is no cheaper)

Where model and measurement differ by more than ``TOLERANCE`` the summary lists it."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dynasoar.experiment.grid import DEPLOYED
from dynasoar.experiment.results import Call

TOLERANCE = 0.20
#: strategies whose deployment ships nothing (the host holds the package and its snapshot)
NOTHING_TRAVELS = ("vm-snap",)
PROJECTION_LIMIT = 10_000  # calls: a projected break-even further out counts as never
Key = tuple[str, str, int, int]  # profile, strategy, size, granularity


@dataclass(frozen=True)
class Measured:
    profile: str
    strategy: str
    size: int
    granularity: int
    deploy: float  # D (0 for the job model)
    per_call: float  # t_X, or t_ship for the job model
    job_per_call: float | None  # t_ship at the same size and granularity
    nstar: float | None  # D / (t_ship - t_X) from this point's own figures; inf: never
    crossing: int | None  # the break-even seen in the real sequences (None: not within it)
    calls: int  # length of the real sequence (stint)
    shipped: int  # bytes that travelled for one deployment (job: for each call)
    cumulative: tuple[float, ...]  # the real sequence's running total, seconds
    projected: bool = False  # crossing lies beyond the calls made (their mean carried on)


@dataclass(frozen=True)
class Model:
    """One strategy's costs on one profile, from its anchor point and the link's goodput."""

    strategy: str
    size: int  # the anchor
    granularity: int
    deploy: float  # D at the anchor (0 for the job model)
    per_call: float  # t at the anchor (t_ship for the job model)
    goodput_bit: float
    job: Model | None = None  # the job model on the same profile (None for the job model)
    #: whether the service's bytes travel when it is deployed (all but vm-snap)
    size_travels: bool = True

    def _bytes(self, size: int) -> float:
        return (size - self.size) * 8 / self.goodput_bit

    def _cpu(self, granularity: int) -> float:
        return (granularity - self.granularity) / 1000

    def deploy_at(self, size: float) -> float:
        if self.job is None:
            return 0.0
        return self.deploy + (self._bytes(int(size)) if self.size_travels else 0.0)

    def per_call_at(self, size: float, granularity: float) -> float:
        shipped = self._bytes(int(size)) if self.job is None else 0.0
        return self.per_call + shipped + self._cpu(int(granularity))

    def total(self, size: float, granularity: float, n: int) -> float:
        return self.deploy_at(size) + n * self.per_call_at(size, granularity)

    def nstar(self, size: float, granularity: float) -> float | None:
        if self.job is None:
            return None
        gain = self.job.per_call_at(size, granularity) - self.per_call_at(size, granularity)
        return self.deploy_at(size) / gain if gain > 0 else math.inf


@dataclass
class Analysis:
    measured: dict[Key, Measured] = field(default_factory=dict)
    models: dict[tuple[str, str], Model] = field(default_factory=dict)
    disagreements: list[str] = field(default_factory=list)

    def at(self, profile: str, strategy: str, size: int, granularity: int) -> Measured | None:
        return self.measured.get((profile, strategy, size, granularity))

    def model(self, profile: str, strategy: str) -> Model | None:
        return self.models.get((profile, strategy))


def analyse(
    calls: list[Call], granularities: tuple[int, ...], goodput_bit: Mapping[str, float]
) -> Analysis:
    seqs = _sequences(calls)
    result = Analysis()
    for profile, size in sorted({(k[0], k[2]) for k in seqs}):
        jobs = {g: seqs.get((profile, "job", size, g), []) for g in granularities}
        for g, job_seqs in jobs.items():
            if job_seqs:
                m = _job_point(profile, size, g, job_seqs)
                result.measured[(profile, "job", size, g)] = m
        for strategy in DEPLOYED:
            for m in _deployed_points(seqs, profile, strategy, size, granularities, jobs):
                result.measured[(m.profile, m.strategy, m.size, m.granularity)] = m
    for profile in sorted({k[0] for k in result.measured}):
        _fit(result, profile, goodput_bit.get(profile))
    result.disagreements = _check(result)
    return result


def _fit(result: Analysis, profile: str, goodput: float | None) -> None:
    if not goodput:
        return
    job: Model | None = None
    for strategy in ("job", *DEPLOYED):
        own = sorted(
            (m for m in result.measured.values() if (m.profile, m.strategy) == (profile, strategy)),
            key=lambda m: (m.size, m.granularity),
        )
        if not own or (strategy != "job" and job is None):
            continue
        a = own[0]
        model = Model(
            strategy,
            a.size,
            a.granularity,
            a.deploy,
            a.per_call,
            goodput,
            job,
            size_travels=strategy not in NOTHING_TRAVELS,
        )
        if strategy == "job":
            job = model
        result.models[(profile, strategy)] = model


def _sequences(calls: Iterable[Call]) -> dict[Key, list[list[Call]]]:
    """The recorded sequences' stints (runs of calls at one granularity), by point."""
    by_id: dict[int, list[Call]] = defaultdict(list)
    for c in calls:
        by_id[c.sequence].append(c)
    grouped: dict[Key, list[list[Call]]] = defaultdict(list)
    for seq in by_id.values():
        seq.sort(key=lambda c: c.call)
        stints: list[list[Call]] = []
        for c in seq:
            if not stints or stints[-1][-1].granularity_ms != c.granularity_ms:
                stints.append([])
            stints[-1].append(c)
        for stint in stints:
            first = stint[0]
            key = (first.profile, first.strategy, first.size_bytes, first.granularity_ms)
            grouped[key].append(stint)
    return grouped


def _running(values: Iterable[float]) -> tuple[float, ...]:
    total, out = 0.0, []
    for v in values:
        total += v
        out.append(total)
    return tuple(out)


def _job_point(profile: str, size: int, g: int, job_seqs: list[list[Call]]) -> Measured:
    t_ship = statistics.median(c.seconds for seq in job_seqs for c in seq)
    first = job_seqs[0]
    return Measured(
        profile,
        "job",
        size,
        g,
        0.0,
        t_ship,
        t_ship,
        None,
        None,
        len(first),
        first[0].shipped_bytes,
        _running(c.seconds for c in first),
    )


def _deployed_points(
    seqs: dict[Key, list[list[Call]]],
    profile: str,
    strategy: str,
    size: int,
    granularities: tuple[int, ...],
    jobs: dict[int, list[list[Call]]],
) -> list[Measured]:
    own = {g: seqs.get((profile, strategy, size, g), []) for g in granularities}
    warm = {g: [c.seconds for s in ss for c in s if not c.cold] for g, ss in own.items()}
    t_warm = {g: statistics.median(w) for g, w in warm.items() if w}
    deploys = [
        s[0].seconds - t_warm[g] for g, ss in own.items() if g in t_warm for s in ss if s[0].cold
    ]
    if not deploys:
        return []
    deploy = statistics.median(deploys)
    # what one deployment shipped (a further stint of a VM's deployment ships nothing itself)
    shipped = next(s[0].shipped_bytes for ss in own.values() for s in ss if s[0].cold)
    points = []
    for g in granularities:
        if g not in t_warm:
            continue
        per_call = t_warm[g]
        job_times = [c.seconds for s in jobs.get(g, []) for c in s]
        t_ship = statistics.median(job_times) if job_times else None
        seq = own[g][0]
        warm_only = not seq[0].cold  # a VM's further stint: D comes from its deployment
        cumulative = _running(c.seconds for c in seq)
        if warm_only:
            cumulative = tuple(deploy + t for t in cumulative)
        nstar: float | None = None
        crossing: int | None = None
        projected = False
        if t_ship is not None:
            gain = t_ship - per_call
            nstar = deploy / gain if gain > 0 else math.inf
            carry_on = statistics.fmean(c.seconds for c in seq) if warm_only else None
            crossing = _crossing(cumulative, job_times, carry_on)
            projected = crossing is not None and crossing > len(cumulative)
        points.append(
            Measured(
                profile,
                strategy,
                size,
                g,
                deploy,
                per_call,
                t_ship,
                nstar,
                crossing,
                len(seq),
                shipped,
                cumulative,
                projected,
            )
        )
    return points


def _crossing(
    cumulative: tuple[float, ...], job_times: list[float], carry_on: float | None = None
) -> int | None:
    """The first n at which the deployed sequence's running total is at most the job model's;
    beyond its calls, with ``carry_on`` seconds a call (up to ``PROJECTION_LIMIT`` calls)."""
    mean_job = statistics.fmean(job_times)
    job_total = 0.0
    total = 0.0
    last = len(cumulative) if carry_on is None else max(len(cumulative), PROJECTION_LIMIT)
    for n in range(1, last + 1):
        job_total += job_times[n - 1] if n <= len(job_times) else mean_job
        total = cumulative[n - 1] if n <= len(cumulative) else total + (carry_on or 0.0)
        if total <= job_total:
            return n
    return None


def as_calls(nstar: float | None) -> int | None:
    """A break-even as a number of calls (at least 1); None when it never comes."""
    if nstar is None or math.isinf(nstar):
        return None
    return max(1, math.ceil(nstar - 1e-9))


def _differs(model: float, measured: float) -> bool:
    return abs(model - measured) > TOLERANCE * max(abs(measured), 1e-9)


def _check(result: Analysis) -> list[str]:
    notes = []
    for m in result.measured.values():
        model = result.model(m.profile, m.strategy)
        if model is None:
            continue
        where = f"{m.profile} {m.strategy} {m.size / (1 << 20):g} MiB g={m.granularity} ms"
        for n in sorted({1, len(m.cumulative)} - {0}):
            predicted, seen = model.total(m.size, m.granularity, n), m.cumulative[n - 1]
            if _differs(predicted, seen):
                notes.append(
                    f"{where}: T({n}) model {predicted:.3f} s, measured {seen:.3f} s "
                    f"({(predicted - seen) / seen:+.0%})"
                )
        if m.strategy == "job" or m.job_per_call is None:
            continue
        predicted_calls = as_calls(model.nstar(m.size, m.granularity))
        if m.crossing is None:
            if predicted_calls is not None and predicted_calls <= m.calls:
                notes.append(
                    f"{where}: n* model {predicted_calls}, but no break-even within the "
                    f"{m.calls} measured calls"
                )
        elif predicted_calls is None:
            notes.append(f"{where}: n* model never, measured {m.crossing}")
        elif _differs(predicted_calls, m.crossing):
            notes.append(f"{where}: n* model {predicted_calls}, measured {m.crossing}")
    return notes
