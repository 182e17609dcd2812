"""The process backend: each code package runs as its own OS process on its own port
(``python -m dynasoar.host.runner``), ready once its endpoint answers a probe. With a runner
pool (:mod:`.runner_pool`), a pre-started runner is handed the package instead of a fresh
process being started: the same sandbox (it takes its identity and limits before it imports
the package), the same pipes.

The runner reports readiness (or why it could not start) on a pipe of its own; its stdout and
stderr share another pipe, which the log pump drains into the deployment's log, so a service
may print as much as it likes without ever blocking on it."""

from __future__ import annotations

import http.client
import logging
import os
import re
import secrets
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dynasoar.errors import DeploymentFailed, DeploymentTimeout
from dynasoar.host import sandbox
from dynasoar.host.backends import Started
from dynasoar.host.backends.runner_pool import RunnerPool
from dynasoar.host.logstore import ServiceLog
from dynasoar.host.package_errors import scrub
from dynasoar.host.runner import FAILED, LISTENING
from dynasoar.package import Manifest

log = logging.getLogger(__name__)

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

#: what the runner may report on its ready pipe (a line, or a failure's description)
MAX_REPORT = 16 << 10


@dataclass
class ServiceProcess:
    process: subprocess.Popen[bytes]
    output: ServiceLog
    deployment_id: str
    root: Path


def runner_command(root: Path, manifest: Manifest, host: str = "127.0.0.1") -> list[str]:
    """The command that serves an unpacked code package on a free port of ``host``."""
    assert manifest.code is not None, "the process backend runs code packages"
    return [
        sys.executable, "-m", "dynasoar.host.runner", "--root", str(root),
        "--app", manifest.code.app, "--wsdl", str(root / manifest.wsdl),
        "--host", host, "--port", "0",
    ]  # fmt: skip


class ProcessBackend:
    name = "process"

    def __init__(
        self, host: str = "127.0.0.1", limits: sandbox.Limits | None = None, warm: int = 0
    ) -> None:
        self._host = host
        self._limits = limits or sandbox.Limits()
        #: As root, every deployment runs as a user of its own; otherwise only under limits.
        self.isolated = os.geteuid() == 0
        if not self.isolated:
            log.warning("not running as root: code services run as this user, only under limits")
        else:
            blocked = sandbox.unreachable(Path(sys.executable).resolve(), Path(__file__))
            if blocked is not None:
                raise SystemExit(
                    f"dynasoar hp: sandboxed services could not reach Python through {blocked}; "
                    "run scripts/sandbox-access.sh (make install does) or run the HP unprivileged"
                )
        self._uids: dict[str, int] = {}
        #: Pre-started runners (``warm`` of them kept ready); none: every start is a fresh one.
        self.pool = RunnerPool(warm, _service_environment()) if warm > 0 else None

    def start(
        self,
        deployment_id: str,
        root: Path,
        manifest: Manifest,
        deadline: float,
        *,
        output: ServiceLog,
        base_image: Path | None = None,
    ) -> Started:
        assert manifest.code is not None, "the process backend runs code packages"
        uid = self._sandbox_user(deployment_id, root.parent)
        ready, ready_w = os.pipe()
        pipe, pipe_w = os.pipe()
        try:
            process = self._warm(root, manifest, uid, pipe_w, ready_w) or self._spawn(
                root, manifest, uid, pipe_w, ready_w
            )
        except BaseException:
            os.close(ready)
            os.close(pipe)
            raise
        finally:
            os.close(ready_w)
            os.close(pipe_w)
        output.attach(pipe)  # the pump's now
        running = ServiceProcess(process, output, deployment_id, root)
        try:
            endpoint = self._await_listening(ready, running, deadline)
            _probe(endpoint, deadline)
        except BaseException:
            self.stop(running, grace=1.0)
            raise
        finally:
            os.close(ready)
        return Started(endpoint=endpoint, handle=running)

    def _spawn(
        self, root: Path, manifest: Manifest, uid: int | None, pipe_w: int, ready_w: int
    ) -> subprocess.Popen[bytes]:
        """A fresh runner process, through the sandbox launcher."""
        inner = [
            *runner_command(root, manifest, self._host),
            "--parent-pid", str(os.getpid()), "--ready-fd", str(ready_w),
        ]  # fmt: skip
        return subprocess.Popen(
            sandbox.command(inner, self._limits, uid),
            stdin=subprocess.DEVNULL,
            stdout=pipe_w,
            stderr=pipe_w,
            pass_fds=(ready_w,),
            cwd=root,
            start_new_session=True,
            env=_service_environment(),
        )

    def _warm(
        self, root: Path, manifest: Manifest, uid: int | None, pipe_w: int, ready_w: int
    ) -> subprocess.Popen[bytes] | None:
        """A pre-started runner handed the package, if the pool has one ready."""
        runner = self.pool.take() if self.pool is not None else None
        if runner is None:
            return None
        assert manifest.code is not None
        order = {
            "root": str(root),
            "app": manifest.code.app,
            "wsdl": str(root / manifest.wsdl),
            "host": self._host,
            "uid": uid,
            "limits": vars(self._limits),
        }
        try:
            runner.hand_over(order, pipe_w, ready_w)
        except OSError as exc:  # it died meanwhile: a fresh one instead
            log.warning("a pre-started runner could not take the package: %s", exc)
            runner.discard()
            return None
        log.info("%s handed to pre-started runner %d", manifest.name, runner.process.pid)
        return runner.process

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

    def _await_listening(self, ready: int, running: ServiceProcess, deadline: float) -> str:
        """The runner's report: its endpoint, or why it could not start."""
        report = b""
        while not report.startswith(LISTENING.encode()) or b"\n" not in report:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeploymentTimeout("the service process did not start listening in time")
            readable, _, _ = select.select([ready], [], [], min(remaining, 0.5))
            if not readable:
                continue
            chunk = os.read(ready, 4096)
            if not chunk or len(report) >= MAX_REPORT:
                raise self._no_start(running, report)
            report += chunk
        line = report.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        return line[len(LISTENING) :]

    def _no_start(self, running: ServiceProcess, report: bytes) -> DeploymentFailed:
        """The runner ended its report without listening: what it said, or what the log says."""
        try:
            status: int | str = running.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            status = "still running"
        text = report.decode("utf-8", "replace")[:MAX_REPORT]
        if text.startswith(FAILED + "\n"):
            return DeploymentFailed(f"the service could not start:\n{text[len(FAILED) + 1 :]}")
        if text:
            return DeploymentFailed(f"the service process said {text[:200]!r} instead of listening")
        running.output.drain()
        return DeploymentFailed(
            f"the service process exited with status {status}: "
            f"{_last_error(running.output.tail_bytes(8192), running.root)}"
        )

    def _sandbox_user(self, deployment_id: str, directory: Path) -> int | None:
        """A user id no other deployment here has; its directory becomes that user's."""
        if not self.isolated:
            return None
        taken = set(self._uids.values())
        uid = sandbox.FIRST_UID + secrets.randbelow(100_000)
        while uid in taken:
            uid += 1
        self._uids[deployment_id] = uid
        sandbox.hand_over(directory, uid)
        return uid

    def stop(self, handle: object, grace: float) -> bool:
        assert isinstance(handle, ServiceProcess)
        self._uids.pop(handle.deployment_id, None)
        process = handle.process
        if process.poll() is not None:
            return True
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=5)
        # The runner ends with 0 on SIGTERM; another status is its own doing (it was already
        # exiting: its sockets close before it can be reaped).
        return process.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL)

    def alive(self, handle: object) -> bool:
        assert isinstance(handle, ServiceProcess)
        return handle.process.poll() is None

    def usage(self, handle: object) -> tuple[float, int]:
        """The service process's CPU time (its own and its reaped children's), from /proc."""
        assert isinstance(handle, ServiceProcess)
        pid = handle.process.pid
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
        with open(f"/proc/{pid}/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
        ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        return ticks / _CLOCK_TICKS, resident_pages * _PAGE_SIZE


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _service_environment() -> dict[str, str]:
    """What a service sees of the host's environment: nothing that could carry its secrets."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ")
    env = {k: v for k, v in os.environ.items() if k in keep}
    return env | {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "HOME": "/nonexistent"}


def _probe(endpoint: str, deadline: float) -> None:
    """Ready means the endpoint answers HTTP (its WSDL), not that the process says so."""
    url = urlsplit(endpoint)
    last: Exception | None = None
    delay = 0.02
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=2)
        try:
            conn.request("GET", (url.path or "/") + "?wsdl")
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return
            last = DeploymentFailed(f"probe of {endpoint} answered HTTP {response.status}")
        except OSError as exc:
            last = exc
        finally:
            conn.close()
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    raise DeploymentTimeout(f"{endpoint} did not answer its readiness probe in time: {last}")


def _last_error(tail: bytes, root: Path) -> str:
    """What went wrong when the runner could not even report: the last ``SomeError: message``
    line of the service's output, with paths outside the package hidden (the fault travels to
    consumers; the host's files are none of theirs)."""
    lines = tail.decode("utf-8", "replace").splitlines()
    errors = [ln.strip() for ln in lines if _ERROR_LINE.match(ln.strip())]
    if errors:
        return scrub(errors[-1][:300], root)
    return "see the service's log (dynasoar logs)" if lines else "(no output)"


_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")
