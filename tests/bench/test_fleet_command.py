"""``dynasoar bench fleet`` as a user runs it: a real SP against simulated hosts, one line per
figure (heartbeats, placement, cold call, registry), and nothing left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_the_fleet_bench_prints_one_line_per_figure(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dynasoar", "bench", "fleet", "--hosts", "5", "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # what it makes for itself goes here
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "dynasoar bench fleet: 5 simulated hosts (a load generator)" in out
    assert re.search(r"(?m)^    fleet +5 simulated hosts, registered in \d+\.\d s$", out), out
    assert re.search(r"(?m)^    heartbeats +\d+\.\d % of one core at the steady ", out), out
    assert re.search(r"(?m)^    placement +p50 \d+\.\d ms p99 \d+\.\d ms \(\d+ decisions", out), out
    assert re.search(r"(?m)^    cold call +p50 \d+ ms \(5 calls\)$", out), out
    assert re.search(r"(?m)^    registry +5 hosts, \d+ KiB$", out), out
    assert "beats refused" not in out  # none refused, none failed
    assert list(tmp_path.iterdir()) == []
