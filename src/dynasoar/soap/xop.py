"""XOP 1.0 in the envelope: the ``xop:Include`` that stands where base64 content would be, and
the checks a receiver makes of what it points to."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

from lxml import etree  # type: ignore[import-untyped, unused-ignore]

from dynasoar import ns
from dynasoar.errors import MalformedMessage
from dynasoar.soap.mtom import Attachment

# RFC 2392 cid URLs %-escape what a URL may not carry; these may stay as they are.
_CID_SAFE = "@!$&'()*+,;=:~/"


def xop_include(content_id: str) -> Any:
    """An ``<xop:Include href="cid:...">`` element to put where base64 content would go."""
    element = etree.Element(f"{{{ns.XOP}}}Include", nsmap={"xop": ns.XOP})
    element.set("href", "cid:" + quote(content_id, safe=_CID_SAFE))
    return element


def find_xop_includes(root_element: Any) -> list[tuple[Any, str]]:
    """Every xop:Include under ``root_element`` with the Content-ID it refers to."""
    found: list[tuple[Any, str]] = []
    for element in root_element.iter(f"{{{ns.XOP}}}Include"):
        href = element.get("href") or ""
        if href[:4].lower() != "cid:":
            raise MalformedMessage(f"xop:Include href {href!r} is not a cid: URL (XOP 1.0)")
        found.append((element, unquote(href[4:])))
    return found


def verify_digest(attachment: Attachment, expected_hex: str) -> None:
    """Refuse an attachment whose SHA-256 is not the one the sender declared."""
    if attachment.sha256 != expected_hex.strip().lower():
        raise MalformedMessage(
            f"attachment <{attachment.content_id}> has SHA-256 {attachment.sha256}, but the "
            f"message declares {expected_hex}: it was corrupted or replaced in transit"
        )
