"""Futures of work handed to worker threads (the MTOM reader's and writer's file I/O)."""

from __future__ import annotations

import asyncio
from typing import Any


def abandon(future: asyncio.Future[Any]) -> None:
    """Drop a worker-thread future nobody will await (its thread runs on regardless)."""
    if not future.done():
        future.cancel()
    elif not future.cancelled():
        future.exception()  # marks it retrieved, so asyncio does not log it as lost
