"""The addresses an actor answers to: the URL it listens on, and the public URLs an operator
configures (``--public-url``, e.g. behind a proxy). A message's ``wsa:To`` must name one of
them, so that a message meant for one actor (a signed control message, say) is not taken by
another that happens to receive it.

Host names are compared as written, but for two kinds of listening address: a loopback one
(127.0.0.1 also answers to ``localhost`` and ``[::1]``) and a wildcard one (0.0.0.0 or ``::``
answers to the machine's names and addresses as the resolver gives them).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
#: Answers of :meth:`OwnAddresses.names` kept (every message asks about the same few URLs;
#: the URLs are the consumers' text, so the cache is cleared when full).
_KEPT_ANSWERS = 1024


@dataclass(frozen=True)
class Base:
    """One base URL: scheme, host (lower case, no brackets), port and path prefix."""

    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Base:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
        if parts.username is not None or parts.query or parts.fragment:
            raise ValueError(f"{url!r}: a base URL has no user, query or fragment")
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError as exc:
            raise ValueError(f"{url!r} has no valid port: {exc}") from None
        return cls(scheme, parts.hostname.lower(), port, unquote(parts.path).rstrip("/"))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"


class OwnAddresses:
    """Which URLs name this actor. Filled in once the server is bound (:meth:`listening`)."""

    def __init__(self, public: Iterable[str] = ()) -> None:
        self.public = [Base.parse(url) for url in public]
        self._listening: Base | None = None
        self._local_names: frozenset[str] | None = None
        self._answers: dict[tuple[str, str], bool] = {}

    def listening(self, url: str) -> None:
        self._listening = Base.parse(url)
        self._answers.clear()

    @property
    def bases(self) -> list[Base]:
        return ([self._listening] if self._listening is not None else []) + self.public

    def names(self, url: str, path: str) -> bool:
        """Does ``url`` (a wsa:To) name the endpoint at ``path`` of this actor? Its query and
        fragment do not matter; a trailing slash does not either."""
        key = (url, path)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._names(url, path)
            if len(self._answers) >= _KEPT_ANSWERS:
                self._answers.clear()
            self._answers[key] = answer
        return answer

    def _names(self, url: str, path: str) -> bool:
        try:
            to = Base.parse(url.split("?", 1)[0].split("#", 1)[0])
        except ValueError:
            return False
        for base in self.public:
            if _same_place(to, base, base.path + path) and to.host == base.host:
                return True
        listening = self._listening
        if listening is None or not _same_place(to, listening, listening.path + path):
            return False
        return to.host == listening.host or to.host in self._aliases(listening.host)

    def describe(self, path: str) -> str:
        return ", ".join(f"{base}{path}" for base in self.bases) or "(not listening yet)"

    def _aliases(self, host: str) -> frozenset[str]:
        if _is_loopback(host):
            return _LOOPBACK_NAMES | {"127.0.0.1", "::1"}
        if host in ("0.0.0.0", "::"):
            if self._local_names is None:
                self._local_names = _LOOPBACK_NAMES | {"127.0.0.1", "::1"} | _machine_names()
            return self._local_names
        return frozenset()


def _same_place(to: Base, base: Base, path: str) -> bool:
    return to.scheme == base.scheme and to.port == base.port and to.path == path.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _machine_names() -> frozenset[str]:
    """This machine's host names and the addresses they resolve to (for a wildcard bind)."""
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    for name in list(names):
        try:
            for info in socket.getaddrinfo(name, None):
                names.add(str(info[4][0]).split("%", 1)[0].lower())
        except OSError:
            continue  # a host name the resolver does not know: only the name itself counts
    return frozenset(n for n in names if n)
