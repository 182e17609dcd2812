"""A one-line upload progress bar, drawn only when the stream is a terminal."""

from __future__ import annotations

import time
from types import TracebackType
from typing import TextIO


class ProgressBar:
    WIDTH = 30

    def __init__(self, label: str, stream: TextIO) -> None:
        self.label = label
        self.stream = stream
        self.enabled = stream.isatty()
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        fraction = done / total if total else 1.0
        filled = int(fraction * self.WIDTH)
        rate = done / max(now - self._started, 1e-6) / (1 << 20)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {fraction:6.1%} {done / (1 << 20):8.1f} MiB {rate:7.1f} MiB/s"
        )
        self.stream.flush()
        self._drawn = True

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
