"""What a sweep records: every call as one row of ``runs.csv``, the links' calibration as
``network.csv``. The analysis reads these records back (analysis.py)."""

from __future__ import annotations

import csv
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from dynasoar.experiment.shaping import Profile


@dataclass(frozen=True)
class Call:
    """One call as the consumer saw it. A job-model call is a whole job (ship, start, call,
    undeploy); in a deployed sequence the first call is the cold one (it deployed), and a VM's
    sequence goes on, on the same deployment, with a stint at each further granularity."""

    profile: str
    strategy: str
    size_bytes: int  # the service's own part (code archive, or VM overlay disk)
    shipped_bytes: int  # what travelled to deploy it (0 for a warm call)
    operation: str  # "Compute", whether the service runs as code or in the VM guest
    granularity_ms: int  # CPU asked of Compute per call
    sequence: int  # calls of one sequence (one deployment) share this id
    call: int  # position in the sequence, from 1
    cold: bool
    seconds: float
    job_deploy_s: float | None = None
    job_call_s: float | None = None
    job_undeploy_s: float | None = None
    load1: float = 0.0  # the machine's 1-minute load average when the call was made


@dataclass(frozen=True)
class LinkMeasure:
    profile: str
    rate_mbit: float
    rtt_ms: float
    measured_rtt_ms: float
    measured_goodput_mbit: float


def load1() -> float:
    return os.getloadavg()[0]


def link_measure(profile: Profile, rtt: float, goodput_bit: float) -> LinkMeasure:
    return LinkMeasure(
        profile.name, profile.rate_bit / 1e6, profile.rtt * 1000, rtt * 1000, goodput_bit / 1e6
    )


def write_csv(path: Path, rows: list[Call] | list[LinkMeasure], kind: type) -> None:
    names = [f.name for f in dataclasses.fields(kind)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        for row in rows:
            writer.writerow([_cell(getattr(row, name)) for name in names])


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def read_calls(path: Path) -> list[Call]:
    with path.open(newline="") as f:
        return [_call(row) for row in csv.DictReader(f)]


def _call(row: dict[str, str]) -> Call:
    def number(name: str) -> float | None:
        return float(row[name]) if row[name] else None

    return Call(
        profile=row["profile"],
        strategy=row["strategy"],
        size_bytes=int(row["size_bytes"]),
        shipped_bytes=int(row["shipped_bytes"]),
        operation=row["operation"],
        granularity_ms=int(row["granularity_ms"]),
        sequence=int(row["sequence"]),
        call=int(row["call"]),
        cold=row["cold"] == "1",
        seconds=float(row["seconds"]),
        job_deploy_s=number("job_deploy_s"),
        job_call_s=number("job_call_s"),
        job_undeploy_s=number("job_undeploy_s"),
        load1=float(row["load1"] or 0),
    )


def read_links(path: Path) -> list[LinkMeasure]:
    with path.open(newline="") as f:
        return [
            LinkMeasure(
                row["profile"],
                float(row["rate_mbit"]),
                float(row["rtt_ms"]),
                float(row["measured_rtt_ms"]),
                float(row["measured_goodput_mbit"]),
            )
            for row in csv.DictReader(f)
        ]
