"""The interop suite's shared parts: one SP and two HPs for the whole suite (each peer gets its
own published copy of the echo sample, so its first call is cold), a package that cannot start
(for the SP's own fault), and the results the README's matrix is made from."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dynasoar.package import pack
from dynasoar.procs import start_actor
from integration.conftest import Cluster, make_package

from .results import RESULTS_FILE, Results

BROKEN = "Broken"

_results = Results()
_started = time.monotonic()


@dataclass
class Interop:
    cluster: Cluster
    work: Path

    @property
    def sp(self) -> str:
        return self.cluster.sp.url

    @property
    def broken(self) -> str:
        return BROKEN

    def publish_echo(self, name: str) -> str:
        """The echo sample published as ``name`` (advertised, not deployed); its URL."""
        self.cluster.client.publish(make_package(self.work, "echo", name))
        return self.cluster.service_url(name)

    def echo_archive(self, name: str) -> Path:
        """The echo sample renamed to ``name``, packed as a .tar.gz (for a peer to publish)."""
        directory = make_package(self.work, "echo", name)
        return pack(directory, self.work / f"{name}.tar.gz")

    def deployments(self, name: str) -> list[object]:
        return list(self.cluster.client.call("ListDeployments", name=name) or [])


def _broken_package(work: Path) -> Path:
    """The echo sample, renamed, whose module fails on import: deploying it fails at once."""
    package = make_package(work, "echo", BROKEN)
    (package / "echo_service.py").write_text('raise ImportError("this package is broken")\n')
    return package


@pytest.fixture(scope="package")
def interop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Interop]:
    work = tmp_path_factory.mktemp("interop")
    sp = start_actor("sp", ["--port", "0", "--data", str(work / "sp")], work / "sp.log")
    cluster = Cluster(work, sp)
    try:
        cluster.add_hp()
        cluster.add_hp()
        cluster.client.publish(_broken_package(work))
        yield Interop(cluster, work)
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def results() -> Results:
    return _results


def require(*tools: str) -> None:
    """Skip when a peer's tool is not installed (``make install`` installs them as root)."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/install-interop.sh)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _results.write(RESULTS_FILE, seconds=time.monotonic() - _started)
