"""Starting dynasoar actors as real processes (the demo, the benchmarks and the integration
tests do): wait for the ``listening on`` line with a deadline, stop with SIGTERM."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType


@dataclass
class Actor:
    role: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    args: list[str] = field(default_factory=list)

    def stop(self, grace: float = 10.0) -> int:
        """SIGTERM, wait up to ``grace``; SIGKILL after that. Returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> Actor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_actor(
    role: str,
    args: list[str],
    log_path: Path | None = None,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
) -> Actor:
    """Run ``dynasoar ROLE ARGS...`` and return once it prints its listening line. ``prefix``
    wraps the command (``ip netns exec NS`` runs the actor in a network namespace); it must
    exec the command, so that the process started is the actor itself."""
    command = [*prefix, sys.executable, "-m", "dynasoar", role, *args]
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    stderr = log_path.open("ab") if log_path is not None else subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
        )
    finally:
        if log_path is not None:
            stderr.close()  # type: ignore[union-attr]
    prefix = f"dynasoar {role} listening on "
    line = first_line(process, timeout)
    if not line.startswith(prefix):
        process.kill()
        process.wait()
        tail = log_path.read_text(errors="replace")[-2000:] if log_path else ""
        raise RuntimeError(f"dynasoar {role} did not start: {line!r}\n{tail}")
    return Actor(role, line[len(prefix) :], process, log_path, args)


def first_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return data.decode(errors="replace") + " (timed out)"
        ready, _, _ = select.select([process.stdout], [], [], remaining)
        if ready:
            chunk = os.read(process.stdout.fileno(), 1024)
            if not chunk:
                return data.decode(errors="replace") + f" (exited {process.wait()})"
            data += chunk
    return data.split(b"\n", 1)[0].decode().strip()
