"""Which ReplyTo / FaultTo addresses the Service Provider sends replies to. A reply to an
address is a request the SP makes on a stranger's behalf, to wherever the stranger says: only
to addresses the operator allowed (``dynasoar sp --reply-to-allow PATTERN``, repeatable; none
by default), only over http or https, never to an address carrying credentials."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from dynasoar.errors import QName, ReplyToNotAllowed

FLAG = "--reply-to-allow"


class ReplyDestinations:
    """The operator's allow-list: shell-style patterns (``*``, ``?``, ``[...]``) matched
    against the whole address, e.g. ``https://*.example.org/replies/*``."""

    def __init__(self, patterns: Sequence[str] = ()) -> None:
        self.patterns = tuple(p.strip() for p in patterns if p.strip())

    def refusal(self, address: str) -> str | None:
        """Why replies may not go to ``address``; None when they may."""
        if not self.patterns:
            return (
                f"this Service Provider sends replies only on the HTTP response: it allows no "
                f"ReplyTo address (its operator can allow some with {FLAG} PATTERN)"
            )
        try:
            parts = urlsplit(address)
            parts.port  # noqa: B018 - raises for a port that is not a number
        except ValueError:
            return f"{address!r} is not a URL"
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return f"{address!r} is not an http:// or https:// URL with a host"
        if parts.username is not None or parts.password is not None:
            return f"{address!r} carries credentials; replies are not sent there"
        if not any(fnmatchcase(address, pattern) for pattern in self.patterns):
            allowed = ", ".join(self.patterns)
            return f"{address!r} matches none of the addresses replies may go to ({allowed})"
        return None

    def check(self, header: QName, address: str) -> None:
        """The addressing rules' check of a non-anonymous ReplyTo / FaultTo."""
        reason = self.refusal(address)
        if reason is not None:
            raise ReplyToNotAllowed(f"wsa:{header[1]}: {reason}", problem_header=header)
