"""Ctrl-C, SIGTERM and SIGHUP as an exception in the main thread, so that every ``with`` block
of the experiment (actors, delay processes, namespaces) is unwound and torn down. A second
signal during the teardown is ignored: the teardown is what must not be cut short."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def interrupts_unwind() -> Iterator[None]:
    fired = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal fired
        if fired:
            print(f"\n{signal.Signals(signum).name}: still cleaning up", file=sys.stderr)
            return
        fired = True
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        fired = True  # from here on (the caller's teardown is done) nothing more is raised
        for sig, old in previous.items():
            signal.signal(sig, old)
