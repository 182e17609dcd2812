"""The figures, one panel per network profile (matplotlib is imported here only). Lines are the
model (analysis.py: anchored at the smallest size and granularity, extrapolated with the link's
measured goodput), markers are what the real sequences measured:

- ``totals.png``: total time against the number of calls, per strategy and size;
- ``nstar_granularity.png``: the break-even n* against the compute per call;
- ``nstar_size.png``: n* against the service's size (the model line is drawn over the whole
  range, also where a strategy was not measured: there it is a prediction)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dynasoar.experiment.analysis import Analysis, Measured, Model
from dynasoar.experiment.grid import DEPLOYED, STRATEGIES, Grid

COLOURS = {
    "job": "#444444",
    "code": "#1f77b4",
    "vm-full": "#d62728",
    "vm-overlay": "#2ca02c",
    "vm-snap": "#9467bd",
    "vm-snap-ship": "#ff7f0e",
}
STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "D", "v")
TOP = 1000.0  # "never" (or not reached) is drawn here, as a triangle
MIB = 1 << 20


def _panels(grid: Grid, title: str, ylabel: str) -> tuple[Figure, list[Axes]]:
    count = len(grid.profiles)
    fig, axes = plt.subplots(1, count, figsize=(5.0 * count, 4.3), squeeze=False, sharey=True)
    fig.suptitle(title if count > 1 else title.replace(": ", ":\n", 1), fontsize=10)
    for ax, profile in zip(axes[0], grid.profiles, strict=True):
        ax.set_title(profile.label, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    return fig, list(axes[0])


def _save(
    fig: Figure, axes: list[Axes], path: Path, legend: Literal["upper left", "upper right"]
) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        more_handles, more_labels = ax.get_legend_handles_labels()
        for h, label in zip(more_handles, more_labels, strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    if handles:
        axes[-1].legend(handles, labels, fontsize=7, loc=legend)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _log_range(low: float, high: float, count: int = 40) -> list[float]:
    if high <= low:
        return [low]
    step = (math.log(high) - math.log(low)) / (count - 1)
    return [math.exp(math.log(low) + i * step) for i in range(count)]


def _clip(value: float | None) -> float:
    return TOP if value is None or math.isinf(value) else min(max(value, 0.5), TOP)


def totals(analysis: Analysis, grid: Grid, path: Path) -> None:
    g = grid.reference_granularity
    fig, axes = _panels(
        grid,
        f"Total time of n calls, Compute({g} ms): model (lines), real sequences (markers)",
        "total time [s]",
    )
    ns = list(grid.calls_axis)
    for ax, profile in zip(axes, grid.profiles, strict=True):
        for index, size in enumerate(grid.sizes):
            for strategy in STRATEGIES:
                model = analysis.model(profile.name, strategy)
                seen = analysis.at(profile.name, strategy, size, g)
                if model is None or seen is None:
                    continue
                colour, style = COLOURS[strategy], STYLES[index % len(STYLES)]
                label = f"{strategy}, {size / MIB:g} MiB"
                ax.plot(
                    ns,
                    [model.total(size, g, n) for n in ns],
                    color=colour,
                    linestyle=style,
                    label=label,
                )
                points = list(enumerate(seen.cumulative, start=1))
                ax.plot(
                    [n for n, _ in points],
                    [t for _, t in points],
                    linestyle="none",
                    marker=MARKERS[index % len(MARKERS)],
                    markersize=3.5,
                    color=colour,
                    alpha=0.8,
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("calls n")
    _save(fig, axes, path, "upper left")


def _markers(ax: Axes, seen: list[tuple[float, Measured]], colour: str, marker: str) -> None:
    for projected, shape in ((False, marker), (True, "x")):  # x: a VM's short stint, carried on
        reached = [
            (x, m.crossing) for x, m in seen if m.crossing is not None and m.projected == projected
        ]
        ax.plot(
            [x for x, _ in reached],
            [float(n) for _, n in reached],
            linestyle="none",
            marker=shape,
            color=colour,
            markersize=5,
            markerfacecolor="none",
        )
    beyond = [(x, m.calls) for x, m in seen if m.crossing is None]
    ax.plot(
        [x for x, _ in beyond],
        [float(n) for _, n in beyond],
        linestyle="none",
        marker="^",
        color=colour,
        markersize=6,
    )


def _nstar_line(
    ax: Axes,
    xs: list[float],
    nstar: Callable[[float], float | None],
    colour: str,
    style: object,
    label: str,
) -> None:
    ax.plot(xs, [_clip(nstar(x)) for x in xs], color=colour, linestyle=style, label=label)


def _nstar_by_granularity(model: Model, size: int, g: float) -> float | None:
    return model.nstar(size, g)


def _nstar_by_size(model: Model, g: int, mib: float) -> float | None:
    return model.nstar(mib * MIB, g)


def nstar_granularity(analysis: Analysis, grid: Grid, path: Path) -> None:
    fig, axes = _panels(
        grid,
        "Break-even n* against the job model, by compute per call: "
        "model D/(t_ship - t_cached) (lines), real sequences (markers; ^: not reached; "
        "x: a VM stint carried on)",
        "n* [calls]",
    )
    gs = _log_range(min(grid.granularities), max(grid.granularities))
    for ax, profile in zip(axes, grid.profiles, strict=True):
        for index, size in enumerate(grid.sizes):
            for strategy in DEPLOYED:
                model = analysis.model(profile.name, strategy)
                seen = [
                    (float(g), m)
                    for g in grid.granularities
                    if (m := analysis.at(profile.name, strategy, size, g)) is not None
                    and m.job_per_call is not None
                ]
                if model is None or not seen:
                    continue
                colour, style = COLOURS[strategy], STYLES[index % len(STYLES)]
                by_g = functools.partial(_nstar_by_granularity, model, size)
                _nstar_line(ax, gs, by_g, colour, style, f"{strategy}, {size / MIB:g} MiB")
                _markers(ax, seen, colour, MARKERS[index % len(MARKERS)])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compute per call g [ms]")
        ax.axhline(1, color="#999999", linewidth=0.8)
    _save(fig, axes, path, "upper right")


def nstar_size(analysis: Analysis, grid: Grid, path: Path) -> None:
    g = grid.reference_granularity
    fig, axes = _panels(
        grid,
        f"Break-even n* against the job model, by size, Compute({g} ms): model (lines), "
        "real sequences (markers; ^: not reached)",
        "n* [calls]",
    )
    sizes = _log_range(min(grid.sizes), max(grid.sizes))
    for ax, profile in zip(axes, grid.profiles, strict=True):
        for strategy in DEPLOYED:
            model = analysis.model(profile.name, strategy)
            if model is None:
                continue
            colour = COLOURS[strategy]
            by_size = functools.partial(_nstar_by_size, model, g)
            _nstar_line(ax, [s / MIB for s in sizes], by_size, colour, "-", strategy)
            seen = [
                (s / MIB, m)
                for s in grid.sizes
                if (m := analysis.at(profile.name, strategy, s, g)) is not None
                and m.job_per_call is not None
            ]
            _markers(ax, seen, colour, "o")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(
            "service size S [MiB]  (vm-full: + ~70 MiB runtime; vm-snap-ship: + snapshot)"
        )
        ax.axhline(1, color="#999999", linewidth=0.8)
    _save(fig, axes, path, "upper right")


def draw_all(analysis: Analysis, grid: Grid, out: Path) -> list[Path]:
    paths = [out / "totals.png", out / "nstar_granularity.png", out / "nstar_size.png"]
    totals(analysis, grid, paths[0])
    nstar_granularity(analysis, grid, paths[1])
    nstar_size(analysis, grid, paths[2])
    return paths
