"""The sweep's printed summary (also saved as ``summary.txt``) and ``points.csv``, the model's
figures per (profile, strategy, size, granularity)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from dynasoar.experiment.analysis import Analysis, Measured
from dynasoar.experiment.grid import STRATEGIES, Grid
from dynasoar.experiment.results import LinkMeasure

POINT_COLUMNS = (
    "profile strategy size_bytes granularity_ms shipped_bytes deploy_s per_call_s "
    "job_per_call_s nstar_point nstar_model nstar_measured nstar_projected measured_calls "
    "model_T1_s model_TN_s measured_TN_s"
).split()


def _number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return ""
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def write_points(analysis: Analysis, path: Path) -> None:
    """Per measured point: its figures, n* from its own figures, from the model, as seen."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(POINT_COLUMNS)
        for m in analysis.measured.values():
            model = analysis.model(m.profile, m.strategy)
            n = len(m.cumulative)
            writer.writerow(
                [
                    m.profile,
                    m.strategy,
                    m.size,
                    m.granularity,
                    m.shipped,
                    _number(m.deploy),
                    _number(m.per_call),
                    _number(m.job_per_call),
                    _number(m.nstar, 3),
                    _number(model.nstar(m.size, m.granularity) if model else None, 3),
                    "" if m.crossing is None else m.crossing,
                    int(m.projected),
                    m.calls,
                    _number(model.total(m.size, m.granularity, 1) if model else None),
                    _number(model.total(m.size, m.granularity, n) if model else None),
                    _number(m.cumulative[-1] if m.cumulative else None),
                ]
            )


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f}"


def _nstar(analysis: Analysis, m: Measured | None) -> str:
    if m is None or m.job_per_call is None:
        return "-"
    model = analysis.model(m.profile, m.strategy)
    predicted = model.nstar(m.size, m.granularity) if model else None
    text = "?" if predicted is None else "never" if math.isinf(predicted) else f"{predicted:.1f}"
    seen = f">{m.calls}" if m.crossing is None else f"{'~' if m.projected else ''}{m.crossing}"
    return f"{text} ({seen})"


def summary(
    analysis: Analysis,
    grid: Grid,
    links: list[LinkMeasure],
    skipped: list[str],
    failures: list[str],
    elapsed: float,
) -> str:
    g_all = grid.granularities
    gs = "/".join(str(g) for g in g_all)
    lines = [
        f"dynasoar bench experiment ({grid.name} grid): {elapsed:.0f} s",
        "D: deploy cost (cold call minus a warm one); per call: median; n*: the calls from "
        "which a strategy beats the job model, as the model D/(t_ship - t_cached) predicts it "
        "(anchored at the smallest size and granularity, extrapolated with the measured "
        "goodput) and, in brackets, as the real sequences met it (>N: not within N calls; "
        "~N: a VM's short stint at a further granularity, its mean warm call carried on).",
    ]
    for link in links:
        lines += [
            "",
            f"== {link.profile}: nominal {link.rate_mbit:g} Mbit/s, RTT {link.rtt_ms:g} ms; "
            f"measured RTT {link.measured_rtt_ms:.2f} ms, goodput "
            f"{link.measured_goodput_mbit:.1f} Mbit/s",
            f"{'strategy':<13}{'size MiB':>9}{'shipped':>9}{'D [s]':>8}  "
            f"{'per call [s] at g = ' + gs + ' ms':<40}  n* at g = {gs} ms",
        ]
        for size in grid.sizes:
            for strategy in STRATEGIES:
                points = [analysis.at(link.profile, strategy, size, g) for g in g_all]
                found = [p for p in points if p is not None]
                if not found:
                    continue
                first = found[0]
                deploy = "-" if strategy == "job" else f"{first.deploy:.2f}"
                per_call = " ".join("-" if p is None else f"{p.per_call:.3f}" for p in points)
                nstar = "" if strategy == "job" else "  ".join(_nstar(analysis, p) for p in points)
                lines.append(
                    f"{strategy:<13}{_mib(size):>9}{_mib(first.shipped):>9}{deploy:>8}  "
                    f"{per_call:<40}  {nstar}"
                )
    lines += ["", f"Model vs measurement, more than {20}% apart:"]
    lines += [f"  {d}" for d in analysis.disagreements] or ["  none"]
    if skipped:
        lines += ["", "Skipped (the SP answers a message within 150 s):"]
        lines += [f"  {s}" for s in skipped]
    if failures:
        lines += ["", "Failed:"]
        lines += [f"  {f}" for f in failures]
    return "\n".join(lines)
