"""A deployment's output log as it travels between actors (HP → SP → client): one chunk of its
text with the offsets a client needs to follow it.

Offsets count bytes of the deployment's whole output stream since it started, so they stay
valid across the host's rotation of the log: ``first`` is the oldest byte the host still keeps,
``start`` .. ``next`` is the text carried, ``end`` is how far the stream had got when read. A
client follows by asking again from ``next``; a ``start`` beyond what it asked for means the
bytes between were rotated away before it read them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime

#: The states a deployment's log can report.
STATES = ("starting", "running", "failed", "undeployed", "exited", "lost")

# Characters XML 1.0 cannot carry (a service may print anything; a reply must stay XML).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class LogChunk:
    deployment: str
    service: str
    state: str
    started: datetime
    ended: datetime | None
    reason: str
    first: int
    start: int
    next: int
    end: int
    text: str
    host: str = ""  # filled in by the Service Provider, which asks several hosts

    def on(self, host: str) -> LogChunk:
        return replace(self, host=host)


def xml_text(data: bytes) -> str:
    """Output bytes as text an XML reply can carry: UTF-8 (invalid sequences replaced), the
    control characters XML forbids replaced too."""
    return _NOT_XML.sub("\ufffd", data.decode("utf-8", "replace"))
