"""An asyncio SOAP client for dynasoar's own calls between actors (SP → HP, CLI → SP uploads).

Every call is WS-Addressed (To, Action, MessageID; the reply must relate to it); binary
parameters go as MTOM attachments streamed from disk. Faults come back as ``RemoteFault``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from dynasoar.errors import DynasoarError, MalformedMessage, RemoteFault, TransportError
from dynasoar.http import ConnectionPool
from dynasoar.soap import addressing
from dynasoar.soap.envelope import SoapVersion, build_envelope, parse_envelope, serialize
from dynasoar.soap.faults import read_fault
from dynasoar.soap.mtom import Attachment, MtomLimits
from dynasoar.soap.mtom_feed import read_mtom
from dynasoar.soap.mtom_writer import MtomWriter, OutgoingAttachment
from dynasoar.soap.security import Policy, sign

MAX_REPLY_BYTES = 16 << 20


@dataclass(frozen=True)
class Reply:
    body: etree._Element  # the Body's first child
    addressing: addressing.AddressingHeaders
    status: int
    #: an MTOM reply's attachments, by Content-ID: files in the caller's spool, the caller's
    attachments: dict[str, Attachment] = field(default_factory=dict)


class SoapClient:
    def __init__(
        self,
        pool: ConnectionPool,
        version: SoapVersion = SoapVersion.SOAP11,
        security: Policy | None = None,
    ) -> None:
        self._pool = pool
        self.version = version
        #: Signs requests (with credentials); requires signed replies (with a trust store).
        self.security = security or Policy()

    async def call(
        self,
        url: str,
        action: str,
        payload: etree._Element,
        *,
        timeout: float,
        attachments: Sequence[OutgoingAttachment] = (),
        headers: Sequence[etree._Element] = (),
        on_progress: Callable[[int, int], None] | None = None,
        spool: Path | None = None,
        reply_limits: MtomLimits | None = None,
    ) -> Reply:
        """``spool``: where the attachments of an MTOM reply go (a reply with attachments is
        accepted only when one is given), within ``reply_limits``."""
        request = addressing.AddressingHeaders(
            to=url, action=action, message_id=addressing.new_message_id(), present=True
        )
        blocks = [*addressing.write_headers(request), *headers]
        root = build_envelope(self.version, [payload], blocks)
        if self.security.credentials is not None:
            sign(root, self.security.credentials)  # last: what is signed is what is sent
        envelope = serialize(root)
        http_headers = [("Accept", f"{self.version.media_type}, multipart/related")]
        if self.version is SoapVersion.SOAP11:
            http_headers.append(("SOAPAction", f'"{action}"'))
        if attachments:
            writer = MtomWriter(envelope, list(attachments), self.version.value, action=action)
            http_headers += [
                ("Content-Type", writer.content_type),
                ("Content-Length", str(writer.content_length)),
            ]
            response = await self._pool.request(
                url,
                "POST",
                headers=http_headers,
                body=writer.aiter_chunks(on_progress=on_progress),
                timeout=timeout,
            )
        else:
            http_headers.append(("Content-Type", self.version.content_type(action)))
            response = await self._pool.request(
                url, "POST", headers=http_headers, body=envelope, timeout=timeout
            )
        media_type = (response.headers.get("content-type") or "").partition(";")[0]
        if media_type.strip().lower() != "multipart/related":
            data = await response.read_all(MAX_REPLY_BYTES)
            return _reply(data, response.status, request, url, self.security)
        if spool is None:
            await response.aclose()
            raise TransportError(f"{url} answered with attachments, which {action} has none of")
        message = await read_mtom(
            response.body, response.headers.get("content-type") or "", spool, reply_limits
        )
        try:
            reply = _reply(message.root, response.status, request, url, self.security)
        except BaseException:
            message.close()
            raise
        return Reply(reply.body, reply.addressing, reply.status, message.attachments)


def _reply(
    data: bytes, status: int, request: addressing.AddressingHeaders, url: str, security: Policy
) -> Reply:
    try:
        envelope = parse_envelope(data)
    except MalformedMessage as exc:
        raise TransportError(
            f"{url} answered HTTP {status} without a SOAP envelope: {data[:200]!r}"
        ) from exc
    assert envelope.body is not None
    fault = read_fault(envelope.body, envelope.version)
    try:
        security.check(envelope.root)
    except DynasoarError as exc:
        said = f" (its fault said: {fault.reason})" if fault is not None else ""
        raise TransportError(f"{url} answered unverifiably: {exc.reason}{said}") from exc
    if fault is not None:
        raise RemoteFault(fault, status=status)
    reply_addressing = addressing.read_headers(envelope.header_blocks)
    related = [rel for rel, _ in reply_addressing.relates_to]
    if request.message_id not in related:
        raise TransportError(f"{url} answered without wsa:RelatesTo {request.message_id}")
    children = [c for c in envelope.body if isinstance(c.tag, str)]
    if not children:
        raise TransportError(f"{url} answered with an empty Body")
    return Reply(children[0], reply_addressing, status)
