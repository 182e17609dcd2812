"""The process backend with a pool of pre-started runners, as real processes: a package handed
to one runs as its sandbox user, under its limits, taken before any of its code ran; its output
reaches its log and its readiness (or its error, in the package's terms) comes back on the
ready pipe; the pool refills, and its runners end with it."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynasoar.errors import DeploymentFailed
from dynasoar.host import sandbox
from dynasoar.host.backends.process import ProcessBackend, ServiceProcess
from dynasoar.host.logpump import LogPump
from dynasoar.host.logstore import LogLimits, LogStore, ServiceLog
from dynasoar.package import load_manifest
from dynasoar.paths import samples_dir

#: At import, before anything else: who the package runs as, and under which limits.
IDENTITY = """
import os, resource, sys
print(f"imported as uid={os.getuid()} nofile={resource.getrlimit(resource.RLIMIT_NOFILE)[0]}")
print("and this goes to stderr", file=sys.stderr)
from echo_service import application
"""


@pytest.fixture
def work() -> Iterator[Path]:
    """Reachable by a sandboxed service's user (as an HP's deployments directory is)."""
    directory = Path(tempfile.mkdtemp(prefix="dynasoar-pool-test-"))
    directory.chmod(0o711)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def backend() -> Iterator[ProcessBackend]:
    backend = ProcessBackend(warm=1)
    yield backend
    backend.close()


@pytest.fixture
def logs(work: Path) -> Iterator[LogStore]:
    pump = LogPump()
    yield LogStore(work / "logs", LogLimits(), pump)
    pump.close()


def ready_runners(backend: ProcessBackend, count: int = 1, timeout: float = 30.0) -> list[int]:
    """Pids of the pool's ready runners, once there are ``count``."""
    assert backend.pool is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = backend.pool.ready_pids()
        if len(pids) >= count:
            return pids
        time.sleep(0.05)
    raise AssertionError("the pool got no runner ready")


def package(work: Path, name: str, module: str) -> Path:
    root = work / name / "pkg"
    shutil.copytree(samples_dir() / "echo", root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "pooled.py").write_text(module)
    manifest = root / "dynasoar.toml"
    manifest.write_text(
        manifest.read_text().replace("echo_service:application", "pooled:application")
    )
    return root


def start(backend: ProcessBackend, root: Path, output: ServiceLog) -> tuple[ServiceProcess, str]:
    started = backend.start(
        root.parent.name, root, load_manifest(root), time.monotonic() + 60, output=output
    )
    assert isinstance(started.handle, ServiceProcess)
    return started.handle, started.endpoint


def test_a_package_handed_over_runs_as_its_sandbox_user(
    backend: ProcessBackend, logs: LogStore, work: Path
) -> None:
    (pre_started,) = ready_runners(backend)
    root = package(work, "one", IDENTITY)
    output = logs.open("one", "Echo", "1.0", "code")
    running, endpoint = start(backend, root, output)
    assert running.process.pid == pre_started  # no new interpreter: the pooled one
    with urllib.request.urlopen(endpoint + "?wsdl", timeout=10) as reply:
        assert reply.status == 200 and b"definitions" in reply.read()
    output.drain()
    text = output.chunk(1 << 20, cursor=0).text
    found = re.search(r"imported as uid=(\d+) nofile=(\d+)", text)
    assert found is not None, text
    uid, nofile = int(found[1]), int(found[2])
    # a root HP runs each package as a user of its own, from before its first line of code
    assert uid >= sandbox.FIRST_UID if os.geteuid() == 0 else uid == os.geteuid()
    assert nofile == sandbox.Limits().open_files
    assert "and this goes to stderr" in text
    assert backend.stop(running, grace=2.0) is False  # stopped by us, not by itself


def test_a_package_that_cannot_start_says_why_in_its_terms(
    backend: ProcessBackend, logs: LogStore, work: Path
) -> None:
    ready_runners(backend)
    root = package(work, "broken", "def application(:\n    pass\n")
    with pytest.raises(DeploymentFailed) as failed:
        start(backend, root, logs.open("broken", "Echo", "1.0", "code"))
    assert 'File "pooled.py", line 1' in failed.value.reason
    assert "SyntaxError" in failed.value.reason
    assert str(work) not in failed.value.reason  # nothing of the host's paths


def test_the_pool_refills_and_its_runners_end_with_it(
    backend: ProcessBackend, logs: LogStore, work: Path
) -> None:
    (first,) = ready_runners(backend)
    running, _ = start(backend, package(work, "two", IDENTITY), logs.open("two", "E", "1", "code"))
    (second,) = ready_runners(backend)
    assert second != first
    backend.stop(running, grace=2.0)
    backend.close()
    deadline = time.monotonic() + 10
    while _alive(second) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(second)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
