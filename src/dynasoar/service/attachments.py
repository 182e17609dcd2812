"""Binary parameters of management operations: an ``xop:Include`` into the message's MTOM
attachments, or (from clients that cannot send MTOM) inline base64 spooled to a file."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from lxml import etree

from dynasoar import ns
from dynasoar.errors import InvalidRequest, MalformedMessage
from dynasoar.images import SHA256_RE, IncomingImage
from dynasoar.snapshots import IncomingSnapshot, read_snapshot
from dynasoar.soap.mtom import Attachment


def attachment_of(state: Any, element: etree._Element) -> Attachment:
    """The file behind a base64Binary element received as ``AnyXml``."""
    # spyne hands AnyXml over as the element's first child, or as the element itself.
    include = (
        element if element.tag == f"{{{ns.XOP}}}Include" else element.find(f"{{{ns.XOP}}}Include")
    )
    if include is not None:
        href = include.get("href", "")
        cid = href[4:] if href.startswith("cid:") else href
        attachments: dict[str, Attachment] = state.attachments
        found = attachments.get(unquote(cid)) or attachments.get(cid)
        if found is None:
            raise MalformedMessage(
                f"xop:Include names {href!r}, which is not a part of the message"
            )
        return found
    return _spool_inline(state, element.text or "")


def _spool_inline(state: Any, text: str) -> Attachment:
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(
            f"the binary element is neither base64 nor an xop:Include: {exc}"
        ) from exc
    spool_dir: Path = state.spool_dir
    fd, name = tempfile.mkstemp(prefix="inline-", dir=spool_dir)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    attachment = Attachment(
        content_id="inline",
        content_type="application/octet-stream",
        path=Path(name),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    state.inline_spooled.append(attachment)
    return attachment


def incoming_images(state: Any, elements: list[etree._Element] | None) -> list[IncomingImage]:
    """The ``image`` elements (dyn:ImageUpload) of a Publish or Deploy, with their content
    resolved to attachments; content left out means "you hold this one already"."""
    images = []
    for first in elements or []:
        # spyne hands an AnyXml element over as its first child: step back up to the image.
        parent = first.getparent()
        element = first if parent is None or etree.QName(first).localname == "image" else parent

        def field(name: str, el: etree._Element = element) -> str:
            return (el.findtext(f"{{*}}{name}") or "").strip()

        name, digest = field("name"), field("sha256").lower()
        if not name or not SHA256_RE.match(digest):
            raise InvalidRequest("every image needs a name and a hex sha256")
        content = element.find("{*}content")
        attachment = attachment_of(state, content) if content is not None else None
        if attachment is not None and attachment.sha256 != digest:
            raise MalformedMessage(
                f"image {name!r}: received content has SHA-256 {attachment.sha256}, "
                f"declared {digest}"
            )
        images.append(IncomingImage(name, digest, attachment))
    return images


def incoming_snapshot(state: Any, first: etree._Element) -> IncomingSnapshot:
    """A Deploy's ``snapshot`` (dyn:Snapshot): the descriptor, its digest checked, and the
    parts that came with it resolved to their attachments."""
    # spyne hands an AnyXml element over as its first child: step back up to the snapshot.
    parent = first.getparent()
    element = first if parent is None or etree.QName(first).localname == "snapshot" else parent
    received = read_snapshot(element)
    parts = []
    for ref in received.snapshot.parts:
        content = received.contents.get(ref.sha256)
        if content is None:
            continue  # the host holds it (or says it does not: ImageNotHeld)
        attachment = attachment_of(state, content)
        if attachment.size != ref.size or attachment.sha256 != ref.sha256:
            raise MalformedMessage(
                f"the snapshot's {ref.name} arrived as {attachment.size} bytes with SHA-256 "
                f"{attachment.sha256}, not {ref.size} bytes with {ref.sha256} as declared: it "
                "was cut short or altered on the way"
            )
        parts.append(IncomingImage(ref.name, ref.sha256, attachment))
    return IncomingSnapshot(received.snapshot, received.required, tuple(parts))
