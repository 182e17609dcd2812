"""Giving the heap's free pages back to the system after a large request.

glibc's malloc keeps what a request freed inside its heap, and gives it back only from the
heap's top: whether a server that once parsed a 30 MiB tree (a 1 MiB attribute flood does
that) stays 30 MiB bigger depends on what happened to be allocated after the tree. Asked
(``malloc_trim(0)``), it returns every free page of every arena: about a millisecond per few
MiB returned, next to nothing when there is none. The server asks after each request whose body
was at least ``ServerLimits.give_back_after`` bytes, so its RSS follows what it holds, not the
largest message it has seen. With another C library this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dynasoar.http.server import Request, ServerLimits


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only: musl has none
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def can_give_back() -> bool:
    return _TRIM is not None


def give_back() -> bool:
    """Return the heap's free pages to the system; whether any were."""
    return bool(_TRIM(0)) if _TRIM is not None else False


def give_back_after(
    loop: asyncio.AbstractEventLoop, request: Request | None, limits: ServerLimits
) -> None:
    """A request was answered (None: refused unread): if its body was large, give back (once
    this step of the loop is over, so that what the handler's frames held is freed too)."""
    limit = limits.give_back_after
    if request is not None and limit is not None and request.body.received >= limit:
        if _TRIM is not None:
            loop.call_soon(give_back)
