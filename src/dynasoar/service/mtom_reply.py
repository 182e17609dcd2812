"""A management port's reply that carries files (a VM snapshot's parts, say) as MTOM
attachments: the operation lists them in ``ctx.udc.outgoing``; files it linked into the spool
for the reply are deleted once sent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from dynasoar.http import Response
from dynasoar.soap.envelope import SoapVersion
from dynasoar.soap.mtom_writer import MtomWriter, OutgoingAttachment


def mtom_response(
    envelope: bytes,
    attachments: Sequence[OutgoingAttachment],
    version: SoapVersion,
    action: str | None,
    spool: Path,
) -> Response:
    writer = MtomWriter(envelope, attachments, version.value, action=action)
    headers = [
        ("Content-Type", writer.content_type),
        ("Content-Length", str(writer.content_length)),
        ("MIME-Version", "1.0"),
    ]
    spooled = [
        a.source for a in attachments if isinstance(a.source, Path) and a.source.parent == spool
    ]
    return Response(200, headers, _then_delete(writer.aiter_chunks(), spooled))


async def _then_delete(chunks: AsyncIterator[bytes], files: list[Path]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        for path in files:
            path.unlink(missing_ok=True)
