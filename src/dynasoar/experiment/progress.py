"""The sweep's progress bar on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    WIDTH = 28

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._started = time.monotonic()
        self._label = ""

    def start(self, label: str) -> None:
        self._label = label
        self._draw()

    def note(self, text: str) -> None:
        """A line of its own on stdout (the bar, if drawn, is redrawn under it)."""
        if self.enabled:
            self.stream.write("\r" + " " * 120 + "\r")
            self.stream.flush()
        print(text, flush=True)
        self._draw()

    def step(self, count: int = 1) -> None:
        self.done = min(self.total, self.done + count)
        self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        fraction = self.done / self.total
        filled = int(fraction * self.WIDTH)
        elapsed = time.monotonic() - self._started
        eta = f"~{elapsed / fraction - elapsed:4.0f} s left" if self.done else "           "
        line = (
            f"\r[{'#' * filled}{'-' * (self.WIDTH - filled)}] {self.done}/{self.total} "
            f"{elapsed:5.0f} s {eta}  {self._label}"
        )
        self.stream.write(line[:160].ljust(120))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
