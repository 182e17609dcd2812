"""HTTP header fields: an ordered, case-insensitive multi-map and its wire encoding."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import overload

#: Header fields as httptools hands them over: (name, value) byte pairs, in wire order.
RawFields = list[tuple[bytes, bytes]]

# Field names the sending side of this package owns: message framing and hop-by-hop fields
# (RFC 9110 section 7.6.1). A handler's or caller's copies are dropped so that headers
# forwarded verbatim from another hop can never contradict the framing actually written.
_OWNED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"content-length",
        b"te",
        b"trailer",
        b"upgrade",
    }
)
_OWNED_LENGTHS = frozenset(len(name) for name in _OWNED)
#: Field names asked for with Headers.get, as the lower-case bytes they are compared as.
_KEYS: dict[str, bytes] = {}
_KEPT_KEYS = 256

# Flags reported by encode_fields about what the caller's fields contained.
HAS_HOST = 1
HAS_DATE = 2
WANTS_CLOSE = 4

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\r\n\x00]")


def _name_bytes(name: str) -> bytes:
    raw = name.encode("latin-1")
    if _TOKEN.fullmatch(raw) is None:
        raise ValueError(f"invalid header name {name!r}")
    return raw


def _value_bytes(value: str) -> bytes:
    raw = value.encode("latin-1")
    if _BAD_VALUE.search(raw) is not None:
        raise ValueError(f"invalid header value {value!r}")
    return raw.strip(b" \t")


class Headers:
    """Ordered multi-map of header fields; names compare case-insensitively.

    Fields are stored as the latin-1 bytes they travel as, so headers parsed off one
    connection can be written to another without decoding and re-encoding each field.
    """

    __slots__ = ("_raw",)

    def __init__(self, items: Headers | Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        if isinstance(items, Headers):
            self._raw: RawFields = list(items._raw)
            return
        pairs = items.items() if isinstance(items, Mapping) else items
        self._raw = [(_name_bytes(name), _value_bytes(value)) for name, value in pairs]

    @classmethod
    def from_raw(cls, raw: RawFields) -> Headers:
        """Wrap fields as parsed off the wire (already validated by the parser); no copy."""
        headers = cls.__new__(cls)
        headers._raw = raw
        return headers

    @property
    def raw(self) -> RawFields:
        """The fields as latin-1 byte pairs, in order (the live list, not a copy)."""
        return self._raw

    @overload
    def get(self, name: str) -> str | None: ...

    @overload
    def get(self, name: str, default: str) -> str: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, else ``default``."""
        key = _KEYS.get(name)
        if key is None:
            key = name.lower().encode("latin-1")
            if len(_KEYS) < _KEPT_KEYS:  # the names asked for are few: the code's own
                _KEYS[name] = key
        size = len(key)
        for field, value in self._raw:
            if len(field) == size and field.lower() == key:
                return value.decode("latin-1")
        return default

    def get_all(self, name: str) -> list[str]:
        key = name.lower().encode("latin-1")
        return [v.decode("latin-1") for f, v in self._raw if f.lower() == key]

    def items(self) -> list[tuple[str, str]]:
        return [(f.decode("latin-1"), v.decode("latin-1")) for f, v in self._raw]

    def add(self, name: str, value: str) -> None:
        self._raw.append((_name_bytes(name), _value_bytes(value)))

    def set(self, name: str, value: str) -> None:
        """Replace every field called ``name`` by one, at the position of the first."""
        field = _name_bytes(name)
        key = field.lower()
        new = (field, _value_bytes(value))
        kept: RawFields = []
        placed = False
        for pair in self._raw:
            if pair[0].lower() == key:
                if not placed:
                    kept.append(new)
                    placed = True
            else:
                kept.append(pair)
        if not placed:
            kept.append(new)
        self._raw[:] = kept

    def remove(self, name: str) -> None:
        """Drop every field called ``name`` (no error when there is none)."""
        key = name.lower().encode("latin-1")
        self._raw[:] = [pair for pair in self._raw if pair[0].lower() != key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        """The field names, in order, repeated when a name repeats."""
        return (f.decode("latin-1") for f, _ in self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(f.lower(), v) for f, v in self._raw] == [(f.lower(), v) for f, v in other._raw]

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


#: What callers may pass wherever headers are accepted.
HeadersLike = Headers | Mapping[str, str] | Iterable[tuple[str, str]]


def encode_fields(headers: HeadersLike) -> tuple[bytes, int | None, int]:
    """Encode fields as ``Name: value\\r\\n`` lines, leaving out the ones the sender owns.

    Returns the encoded lines, the Content-Length the fields declared (or None) and
    HAS_HOST / HAS_DATE / WANTS_CLOSE flags, so the sender can frame the message itself.
    """
    raw = headers._raw if isinstance(headers, Headers) else Headers(headers)._raw
    parts: list[bytes] = []
    declared: int | None = None
    flags = 0
    for field, value in raw:
        size = len(field)
        if size in _OWNED_LENGTHS:
            key = field.lower()
            if key in _OWNED:
                if key == b"content-length":
                    # Only a plain non-negative number frames a body; anything else is dropped
                    # and the body framed by what it really is.
                    value = value.strip()
                    declared = int(value) if value.isdigit() else declared
                elif key == b"connection" and b"close" in value.lower():
                    flags |= WANTS_CLOSE
                continue
        if size == 4:
            key = field.lower()
            if key == b"host":
                flags |= HAS_HOST
            elif key == b"date":
                flags |= HAS_DATE
        parts += (field, b": ", value, b"\r\n")
    return b"".join(parts), declared, flags
