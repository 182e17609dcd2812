"""A small pool of pre-started runner processes (:mod:`dynasoar.host.warm`): the process backend
hands one a code package instead of starting a fresh Python, so a cold start costs the
package's own import, not the interpreter's and the runtime's. The pool refills itself on a
thread of its own after each hand-over; a runner that died meanwhile is skipped."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: A runner that has not imported the runtime by then is given up on.
START_SECONDS = 30.0


@dataclass
class WarmRunner:
    process: subprocess.Popen[bytes]
    control: socket.socket

    def hand_over(self, order: dict[str, Any], output_fd: int, ready_fd: int) -> None:
        """Give it the package (``order``) and the write ends of the deployment's output and
        ready pipes; it is the deployment's process from now on."""
        try:
            socket.send_fds(self.control, [json.dumps(order).encode()], [output_fd, ready_fd])
        finally:
            self.control.close()

    def discard(self) -> None:
        self.control.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


class RunnerPool:
    def __init__(self, size: int, env: dict[str, str]) -> None:
        self.size = size
        self._env = env
        self._ready: deque[WarmRunner] = deque()
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._closed = threading.Event()
        self.handed = 0  # hand-overs since start
        self._thread = threading.Thread(target=self._refill, name="runner-pool", daemon=True)
        if size > 0:
            self._wanted.set()
            self._thread.start()

    def take(self) -> WarmRunner | None:
        """A ready runner (and the pool starts another), or None when none is ready yet."""
        with self._lock:
            while self._ready:
                runner = self._ready.popleft()
                if runner.process.poll() is None:
                    self.handed += 1
                    self._wanted.set()
                    return runner
                runner.control.close()
        self._wanted.set()
        return None

    def ready_pids(self) -> list[int]:
        with self._lock:
            return [r.process.pid for r in self._ready if r.process.poll() is None]

    def close(self) -> None:
        self._closed.set()
        self._wanted.set()
        if self._thread.is_alive():
            self._thread.join(timeout=START_SECONDS + 5)
        with self._lock:
            runners, self._ready = list(self._ready), deque()
        for runner in runners:
            runner.discard()

    def _refill(self) -> None:
        while not self._closed.is_set():
            self._wanted.wait()
            self._wanted.clear()
            while not self._closed.is_set():
                with self._lock:
                    if len(self._ready) >= self.size:
                        break
                runner = self._start()
                if runner is None:
                    self._closed.wait(5.0)  # a runner that cannot start: not in a tight loop
                    continue
                with self._lock:
                    if self._closed.is_set():
                        runner.discard()
                        return
                    self._ready.append(runner)

    def _start(self) -> WarmRunner | None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "dynasoar.host.warm",
                    "--control-fd", str(theirs.fileno()), "--parent-pid", str(os.getpid()),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                cwd="/",
                start_new_session=True,  # its own process group: stopping it stops its children
                env=self._env,
            )  # fmt: skip
        except OSError as exc:
            log.warning("could not start a runner for the pool: %s", exc)
            ours.close()
            return None
        finally:
            theirs.close()
        runner = WarmRunner(process, ours)
        ours.settimeout(START_SECONDS)
        try:
            said = ours.recv(64)
        except OSError:
            said = b""
        if said != b"ready":
            log.warning("a pre-started runner did not get ready (%r); not pooled", said[:40])
            runner.discard()
            return None
        ours.settimeout(None)
        return runner
