"""MIME header codec (RFC 2045 / 2046 / 2387): Content-Type values and part header blocks.

Pure functions, no I/O. :mod:`dynasoar.soap.mtom` uses them for the HTTP ``Content-Type`` of a
multipart/related message, for the headers of each part, and to read the SOAP version and
action out of those types.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from dynasoar.errors import MalformedMessage, PayloadTooLarge

XOP_MEDIA_TYPE = "application/xop+xml"
#: The envelope media types and the SOAP version each one means.
SOAP_MEDIA_TYPES = {"text/xml": "1.1", "application/soap+xml": "1.2"}

# RFC 2045 token characters: printable ASCII minus tspecials and space.
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+\Z")
# RFC 2046 bchars; the last character of a boundary may not be a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]\Z")


@dataclass(frozen=True)
class ContentType:
    """A parsed Content-Type: lower-cased ``type/subtype`` and parameters.

    Parameter names are lower-cased (they are case-insensitive); values are unquoted and kept
    as sent, since boundaries and Content-IDs are case-sensitive.
    """

    media_type: str
    params: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        return self.params.get(name.lower())

    def __str__(self) -> str:
        return format_content_type(self.media_type, self.params.items())


def parse_content_type(value: str) -> ContentType:
    """Parse ``type/subtype; name=value; name="quoted \\"value\\""``.

    Lenient where real stacks are sloppy (spaces around ``=`` and ``;``, a trailing ``;``,
    tspecials such as ``<>@/`` in unquoted values), strict where ambiguity would let two
    parsers disagree: an unterminated quote or a repeated parameter is refused.
    """
    media, _, rest = value.partition(";")
    media = media.strip().lower()
    kind, slash, subtype = media.partition("/")
    if not (slash and _TOKEN.match(kind) and _TOKEN.match(subtype)):
        raise MalformedMessage(f"Content-Type {value!r} is not of the form type/subtype")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        name, param_value, pos = _next_param(rest, pos, value)
        if name is None:
            continue
        if name in params:
            raise MalformedMessage(f"Content-Type {value!r} repeats the parameter {name!r}")
        params[name] = param_value
    return ContentType(media, params)


def _next_param(rest: str, pos: int, whole: str) -> tuple[str | None, str, int]:
    """One ``name=value`` starting at ``pos``; returns the position after its ``;``."""
    eq = rest.find("=", pos)
    semi = rest.find(";", pos)
    if eq == -1 or (semi != -1 and semi < eq):
        stray = rest[pos : semi if semi != -1 else len(rest)].strip()
        if stray:
            raise MalformedMessage(f"Content-Type {whole!r} has a parameter without a value")
        return None, "", (semi + 1 if semi != -1 else len(rest))
    name = rest[pos:eq].strip().lower()
    if not _TOKEN.match(name):
        raise MalformedMessage(f"Content-Type {whole!r} has a bad parameter name {name!r}")
    start = eq + 1
    while start < len(rest) and rest[start] in " \t":
        start += 1
    if start < len(rest) and rest[start] == '"':
        param_value, end = _quoted_string(rest, start, whole)
        semi = rest.find(";", end)
        if rest[end : semi if semi != -1 else len(rest)].strip():
            raise MalformedMessage(f"Content-Type {whole!r} has text after a quoted value")
    else:
        semi = rest.find(";", start)
        param_value = rest[start : semi if semi != -1 else len(rest)].strip()
    return name, param_value, (semi + 1 if semi != -1 else len(rest))


def _quoted_string(text: str, start: int, whole: str) -> tuple[str, int]:
    """The RFC 822 quoted-string opening at ``start``; returns (value, index after it)."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif ch == '"':
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise MalformedMessage(f"Content-Type {whole!r} has an unterminated quoted string")


def format_content_type(media_type: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """Build a Content-Type value; values that are not plain tokens are quoted."""
    parts = [media_type]
    for name, value in params:
        if "\r" in value or "\n" in value:
            raise ValueError(f"Content-Type parameter {name!r} contains a line break")
        parts.append(f"{name}={_quote_if_needed(value)}")
    return "; ".join(parts)


def _quote_if_needed(value: str) -> str:
    if _TOKEN.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_valid_boundary(boundary: str) -> bool:
    """True for a boundary RFC 2046 allows: 1 to 70 bchars, not ending in a space."""
    return bool(_BOUNDARY.match(boundary))


def parse_header_block(block: bytes, *, max_headers: int, where: str) -> list[tuple[str, str]]:
    """Split a part's header block (CRLF-separated, no final blank line) into (name, value).

    Names are lower-cased. Folded lines (a leading space or tab, RFC 5322 obs-fold) continue
    the previous header. Bytes are read as Latin-1 so any octet decodes: MIME headers are
    ASCII, and a stray high byte should reach the caller as a visible character, not an error.
    ``where`` names the part in error messages ("MTOM part 2").
    """
    headers: list[tuple[str, str]] = []
    for line in block.decode("latin-1").split("\r\n"):
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _TOKEN.match(name):
            raise MalformedMessage(f"{where} has a header line that is not 'Name: value': {line!r}")
        if len(headers) >= max_headers:
            raise PayloadTooLarge(f"{where} has more than {max_headers} headers")
        headers.append((name.lower(), value.strip()))
    return headers


def header_value(headers: Iterable[tuple[str, str]], name: str, *, where: str) -> str | None:
    """The value of the one header called ``name``; a repeated one is refused as ambiguous."""
    values = [value for key, value in headers if key == name]
    if len(values) > 1:
        raise MalformedMessage(f"{where} repeats the header {name}")
    return values[0] if values else None


def unbracket(content_id: str) -> str:
    """``<a@b>`` → ``a@b`` (Content-ID and the ``start`` parameter carry angle brackets)."""
    content_id = content_id.strip()
    if content_id.startswith("<") and content_id.endswith(">"):
        return content_id[1:-1].strip()
    return content_id


def parse_multipart_related(content_type: str) -> ContentType:
    """The HTTP Content-Type of an MTOM message, checked: multipart/related with a boundary."""
    top = parse_content_type(content_type)
    if top.media_type != "multipart/related":
        raise MalformedMessage(
            f"expected an MTOM message (multipart/related), got Content-Type {top.media_type}"
        )
    declared = (top.get("type") or XOP_MEDIA_TYPE).lower()
    if declared != XOP_MEDIA_TYPE and declared not in SOAP_MEDIA_TYPES:
        raise MalformedMessage(f"multipart/related of type {declared!r} is not an MTOM message")
    boundary = top.get("boundary")
    if not boundary:
        raise MalformedMessage("the multipart/related Content-Type has no boundary parameter")
    if not is_valid_boundary(boundary):
        raise MalformedMessage(f"the MIME boundary {boundary!r} is not valid (RFC 2046)")
    return top


def soap_version_and_action(top: ContentType, root_type: ContentType) -> tuple[str, str | None]:
    """SOAP version and action from the root part's Content-Type (and the message's).

    XOP puts the envelope's own media type in the root's ``type`` parameter (falling back to
    the message's ``start-info``); the action may ride on that type (SOAP 1.2), on the root
    Content-Type, on start-info or, as Axis2 sends it, on the multipart/related header itself.
    """
    start_info = top.get("start-info")
    inner = root_type
    if root_type.media_type == XOP_MEDIA_TYPE:
        inner_value = root_type.get("type") or start_info
        if not inner_value:
            raise MalformedMessage("the MTOM root part's Content-Type has no type parameter")
        inner = parse_content_type(inner_value)
    version = SOAP_MEDIA_TYPES.get(inner.media_type)
    if version is None:
        raise MalformedMessage(
            f"the MTOM root part is {inner.media_type}, not a SOAP envelope "
            "(text/xml or application/soap+xml)"
        )
    start_info_action = parse_content_type(start_info).get("action") if start_info else None
    action = inner.get("action") or root_type.get("action") or start_info_action
    return version, action or top.get("action")
