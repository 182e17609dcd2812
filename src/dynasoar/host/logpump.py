"""The log pump: one thread that always reads every deployment's output pipes (a code service's
stdout and stderr, a VM's serial console) and hands what it reads to that deployment's log.

A service writing to a pipe nobody reads blocks once the pipe's buffer (64 KiB) is full; the
pump never stops reading, whatever the logs do with the bytes, so no service ever waits on its
own output. One selector serves all deployments; each readable pipe gets one read per round,
so a chatty service cannot starve a quiet one.

Other threads talk to the pump through a queue and a wake-up pipe (the selector is the pump
thread's alone): ``attach`` a pipe to a sink, ``drain`` a sink (everything its pipes hold right
now is written before it returns), ``release`` it (drain, then close its pipes).
"""

from __future__ import annotations

import collections
import logging
import os
import selectors
import threading
from typing import Protocol

log = logging.getLogger(__name__)

CHUNK = 64 << 10
#: reads of one pipe in a drain; a writer still going could otherwise keep a drain busy forever
DRAIN_READS = 256


class Sink(Protocol):
    """Where a pipe's bytes go (a deployment's log)."""

    def write(self, data: bytes) -> None:
        """Called on the pump's thread only; must not raise."""
        ...

    def closed(self) -> None:
        """All the sink's pipes reached their end or were released (may come more than once)."""
        ...


class LogPump:
    def __init__(self, chunk: int = CHUNK) -> None:
        self._chunk = chunk
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._commands: collections.deque[tuple[str, Sink, int, threading.Event | None]] = (
            collections.deque()
        )
        self._lock = threading.Lock()
        self._sinks: dict[int, Sink] = {}  # pipe fd -> its sink (the pump thread's alone)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="log-pump", daemon=True)
        self._thread.start()

    # -- any thread ----------------------------------------------------------------------------

    def attach(self, fd: int, sink: Sink) -> None:
        """From now on the pump owns ``fd`` (the read end of a pipe): it reads it into ``sink``
        until its end, or until the sink is released, then closes it."""
        os.set_blocking(fd, False)
        self._submit("attach", sink, fd, None)

    def drain(self, sink: Sink, timeout: float) -> bool:
        """Wait until what ``sink``'s pipes hold now is in the sink; False if not in time."""
        done = threading.Event()
        self._submit("drain", sink, -1, done)
        return done.wait(timeout)

    def release(self, sink: Sink, timeout: float) -> bool:
        """Drain ``sink``'s pipes, then close them (its writers are gone or no longer heard)."""
        done = threading.Event()
        self._submit("release", sink, -1, done)
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread; pipes still attached are drained once and closed."""
        with self._lock:
            if not self._stopping:
                self._stopping = True
                self._wake()
        self._thread.join(timeout)

    def _submit(self, what: str, sink: Sink, fd: int, done: threading.Event | None) -> None:
        with self._lock:  # the wake-up pipe is closed under this lock when the pump stops
            stopping = self._stopping
            if not stopping:
                self._commands.append((what, sink, fd, done))
                self._wake()
        if stopping:  # nobody will read it: close what was handed over, answer at once
            if fd >= 0:
                os.close(fd)
            sink.closed()
            if done is not None:
                done.set()

    def _wake(self) -> None:
        """(Under the lock.)"""
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # a wake-up is already pending

    # -- the pump's thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                for key, _ in self._selector.select():
                    if key.fd == self._wake_r:
                        self._commands_now()
                    elif key.fd in self._sinks:  # (a command earlier in this batch may have
                        self._read(key.fd)  # drained it to its end and closed it)
                with self._lock:
                    if self._stopping:
                        break
        except Exception:  # never expected: say so loudly, services would block on full pipes
            log.exception("the log pump stopped")
        finally:
            self._shut()

    def _commands_now(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            with self._lock:
                if not self._commands:
                    return
                what, sink, fd, done = self._commands.popleft()
            if what == "attach":
                self._sinks[fd] = sink
                self._selector.register(fd, selectors.EVENT_READ)
            else:
                for own in [f for f, s in self._sinks.items() if s is sink]:
                    if self._drain_fd(own) and what == "release":
                        self._close(own)
                if what == "release":
                    sink.closed()
            if done is not None:
                done.set()

    def _read(self, fd: int) -> bool:
        """One read of ``fd``: True if it may hold more, False at its end (then it is closed)."""
        try:
            data = os.read(fd, self._chunk)
        except BlockingIOError:
            return False
        except OSError as exc:
            log.warning("reading a service's output: %s", exc)
            data = b""
        sink = self._sinks[fd]
        if not data:
            self._close(fd)
            if sink not in self._sinks.values():
                sink.closed()
            return False
        sink.write(data)
        return True

    def _drain_fd(self, fd: int) -> bool:
        """Read ``fd`` until it is empty; False if it reached its end (and is closed)."""
        for _ in range(DRAIN_READS):
            if not self._read(fd):
                return fd in self._sinks
        return True

    def _close(self, fd: int) -> None:
        self._sinks.pop(fd, None)
        try:
            self._selector.unregister(fd)
        except (KeyError, ValueError):
            pass
        os.close(fd)

    def _shut(self) -> None:
        for fd in list(self._sinks):
            sink = self._sinks[fd]
            if self._drain_fd(fd):
                self._close(fd)
            sink.closed()
        with self._lock:
            self._stopping = True
            pending, self._commands = list(self._commands), collections.deque()
            os.close(self._wake_r)
            os.close(self._wake_w)
        for _, sink, fd, done in pending:
            if fd >= 0:
                os.close(fd)
            sink.closed()
            if done is not None:
                done.set()
        self._selector.close()
