"""Streaming MTOM/XOP: reading SOAP messages whose binary content travels as MIME parts.

W3C SOAP MTOM + XOP 1.0 over multipart/related (RFC 2387, RFC 2046). The reader keeps the root
part (the envelope) in memory and spools every other part to its own file, hashing it on the
way; the writer (:mod:`dynasoar.soap.mtom_writer`) streams files piecewise with a Content-Length
known up front. Neither holds a payload in memory, so VM images of several GiB cost a few MiB
of RSS. Feeding a reader from a stream (async, on a worker thread) is
:mod:`dynasoar.soap.mtom_feed`'s; the xop:Include helpers are in :mod:`dynasoar.soap.xop`.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from dynasoar.errors import MalformedMessage, PayloadTooLarge
from dynasoar.soap.mime import (
    header_value,
    parse_content_type,
    parse_header_block,
    parse_multipart_related,
    soap_version_and_action,
    unbracket,
)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

_PLAIN_ENCODINGS = {"binary", "8bit", "7bit"}
# Transport padding (RFC 2046 LWSP after a boundary) longer than this is an attack, not padding.
_MAX_PADDING = 1024
# Small network reads are coalesced into writes of this size; bigger ones bypass the buffer
# (CPython's BufferedWriter writes them straight through instead of copying them).
_SPOOL_BUFFER = 64 * KiB


@dataclass(frozen=True)
class MtomLimits:
    """Bounds on what one incoming MTOM message may cost; the defaults suit a SOAP call."""

    max_parts: int = 16
    max_header_bytes: int = 8 * KiB  # of one part's header block
    max_headers: int = 32  # per part
    max_root_bytes: int = 4 * MiB
    max_attachment_bytes: int = 64 * GiB  # per part
    max_total_attachment_bytes: int = 64 * GiB
    max_body_bytes: int = 65 * GiB  # everything, preamble and epilogue included


@dataclass(frozen=True)
class Attachment:
    """One non-root part, spooled to ``path``; ``content_id`` has no angle brackets."""

    content_id: str
    content_type: str
    path: Path
    size: int
    sha256: str

    def delete(self) -> None:
        # A caller that moved the file away to keep it has done nothing wrong.
        self.path.unlink(missing_ok=True)


@dataclass
class MtomMessage:
    """A received MTOM message; owns its spooled files until :meth:`close`.

    ``action`` comes from the MIME types (SOAP 1.2's ``action`` parameter, or Axis2's on the
    multipart header); a SOAP 1.1 SOAPAction is an HTTP header, so the caller reads it.
    """

    root: bytes
    root_content_type: str
    soap_version: str  # "1.1" or "1.2"
    action: str | None
    attachments: dict[str, Attachment] = field(default_factory=dict)

    def close(self) -> None:
        for attachment in self.attachments.values():
            attachment.delete()

    def __enter__(self) -> MtomMessage:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _State(enum.Enum):
    PREAMBLE = "preamble"
    DELIMITER = "delimiter"  # just past "CRLF--boundary": close marker or padding + CRLF next
    HEADERS = "headers"
    BODY = "body"
    EPILOGUE = "epilogue"
    DONE = "done"
    FAILED = "failed"


@dataclass
class _Part:
    index: int
    content_id: str | None
    content_type: str | None
    is_root: bool
    path: Path | None = None
    file: BinaryIO | None = None
    sha256: hashlib._Hash = field(default_factory=hashlib.sha256)
    size: int = 0
    data: bytearray = field(default_factory=bytearray)  # the root part only


class MtomReader:
    """Incremental push parser for one multipart/related MTOM body.

    ``feed`` may be called from a worker thread (``read_mtom`` does so for big bodies);
    a lock keeps ``abort`` from pulling files out from under a feed still running there.
    """

    def __init__(
        self, content_type: str, spool_dir: Path, limits: MtomLimits | None = None
    ) -> None:
        self._limits = limits or MtomLimits()
        self._spool_dir = Path(spool_dir)
        self._top = parse_multipart_related(content_type)
        boundary = self._top.get("boundary") or ""
        # RFC 2046: the CRLF before "--boundary" belongs to the delimiter, not the part.
        self._delimiter = b"\r\n--" + boundary.encode("ascii")
        start = self._top.get("start")
        self._start = unbracket(start) if start else None
        # A virtual CRLF lets a boundary at the very start of the body match like every other.
        self._buf = b"\r\n"
        self._pos = 0
        self._state = _State.PREAMBLE
        self._received = 0
        self._part: _Part | None = None
        self._parts_seen = 0
        self._attachment_total = 0
        self._root: _Part | None = None
        self._content_ids: set[str] = set()
        self._attachments: dict[str, Attachment] = {}
        self._spooled: list[Path] = []
        self._lock = threading.Lock()

    def feed(self, chunk: bytes) -> None:
        with self._lock:
            self._check_usable()
            try:
                self._received += len(chunk)
                if self._received > self._limits.max_body_bytes:
                    raise PayloadTooLarge(
                        f"the MTOM message is larger than {self._limits.max_body_bytes} bytes"
                    )
                self._buf = self._buf + chunk if self._buf else chunk
                self._pos = 0
                while self._step():
                    pass
                self._buf = self._buf[self._pos :]
            except BaseException:
                self._discard()
                raise

    def finish(self) -> MtomMessage:
        """The message, once the whole body was fed; its files now belong to the caller."""
        with self._lock:
            self._check_usable()
            try:
                if self._state is not _State.EPILOGUE:
                    raise MalformedMessage(self._truncation_reason())
                message = self._message()
            except BaseException:
                self._discard()
                raise
            self._state = _State.DONE
            return message

    def abort(self) -> None:
        """Delete every spooled file; a no-op after a successful :meth:`finish`."""
        with self._lock:
            if self._state is not _State.DONE:
                self._discard()

    # -- the state machine: each step returns True when it moved on and may run again --

    def _step(self) -> bool:
        if self._state is _State.BODY:
            return self._step_body()
        if self._state is _State.DELIMITER:
            return self._step_delimiter()
        if self._state is _State.HEADERS:
            return self._step_headers()
        if self._state is _State.PREAMBLE:
            return self._step_preamble()
        self._pos = len(self._buf)  # the epilogue is ignored (RFC 2046)
        return False

    def _step_preamble(self) -> bool:
        found = self._buf.find(self._delimiter, self._pos)
        if found == -1:
            self._pos = max(self._pos, len(self._buf) - len(self._delimiter) + 1)
            return False
        self._pos = found + len(self._delimiter)
        self._state = _State.DELIMITER
        return True

    def _step_delimiter(self) -> bool:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 2:
            return False
        if buf.startswith(b"--", pos):
            self._pos = pos + 2
            self._state = _State.EPILOGUE
            return True
        eol = buf.find(b"\r\n", pos)
        padding = buf[pos:eol] if eol != -1 else buf[pos:].removesuffix(b"\r")
        if padding.strip(b" \t") or len(padding) > _MAX_PADDING:
            raise MalformedMessage(
                f"the boundary line before MTOM part {self._parts_seen + 1} is followed by "
                f"unexpected characters {bytes(padding[:40])!r}"
            )
        if eol == -1:
            return False
        self._pos = eol + 2
        self._parts_seen += 1
        if self._parts_seen > self._limits.max_parts:
            raise PayloadTooLarge(f"the MTOM message has more than {self._limits.max_parts} parts")
        self._state = _State.HEADERS
        return True

    def _step_headers(self) -> bool:
        buf, pos = self._buf, self._pos
        if buf.startswith(b"\r\n", pos):
            block, self._pos = b"", pos + 2  # a part with no headers at all
        else:
            end = buf.find(b"\r\n\r\n", pos)
            too_long = (end if end != -1 else len(buf)) - pos > self._limits.max_header_bytes
            if too_long:
                raise PayloadTooLarge(
                    f"the headers of MTOM part {self._parts_seen} are longer than "
                    f"{self._limits.max_header_bytes} bytes"
                )
            if end == -1:
                return False
            block, self._pos = buf[pos:end], end + 4
        self._part = self._open_part(block)
        self._state = _State.BODY
        return True

    def _step_body(self) -> bool:
        buf = self._buf
        found = buf.find(self._delimiter, self._pos)
        if found != -1:
            self._write(self._pos, found)
            self._pos = found + len(self._delimiter)
            self._close_part()
            self._state = _State.DELIMITER
            return True
        # Only a CR in the last len(delimiter)-1 bytes can start a delimiter split across
        # chunks; everything before it is part data and can go out now.
        tail = buf.find(b"\r", max(self._pos, len(buf) - len(self._delimiter) + 1))
        end = len(buf) if tail == -1 else tail
        self._write(self._pos, end)
        self._pos = end
        return False

    # -- parts --

    def _open_part(self, block: bytes) -> _Part:
        index = self._parts_seen
        where = f"MTOM part {index}"
        headers = parse_header_block(block, max_headers=self._limits.max_headers, where=where)
        raw_id = header_value(headers, "content-id", where=where)
        content_id = unbracket(raw_id) if raw_id else None
        encoding = header_value(headers, "content-transfer-encoding", where=where) or "7bit"
        if encoding.strip().lower() not in _PLAIN_ENCODINGS:
            raise MalformedMessage(
                f"{where} uses Content-Transfer-Encoding {encoding!r}; MTOM parts must be "
                "binary, 8bit or 7bit"
            )
        is_root = (content_id == self._start) if self._start else (index == 1)
        if content_id is not None:
            if content_id in self._content_ids:
                raise MalformedMessage(f"{where} repeats the Content-ID <{content_id}>")
            self._content_ids.add(content_id)
        part = _Part(index, content_id, header_value(headers, "content-type", where=where), is_root)
        if is_root:
            self._root = part
        elif content_id is None:
            raise MalformedMessage(f"{where} has no Content-ID, so nothing can refer to it")
        else:
            part.path, part.file = self._new_spool_file()
        return part

    def _new_spool_file(self) -> tuple[Path, BinaryIO]:
        self._spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp: O_EXCL, mode 0600, a name nobody can guess or pre-create.
        fd, name = tempfile.mkstemp(prefix="mtom-", suffix=".part", dir=self._spool_dir)
        path = Path(name)
        self._spooled.append(path)
        try:
            return path, open(fd, "wb", buffering=_SPOOL_BUFFER)  # closed in _close_part
        except BaseException:
            os.close(fd)
            raise

    def _write(self, start: int, end: int) -> None:
        part = self._part
        if part is None or end <= start:
            return
        size = end - start
        if part.is_root:
            if len(part.data) + size > self._limits.max_root_bytes:
                raise PayloadTooLarge(
                    f"the MTOM root part is larger than {self._limits.max_root_bytes} bytes"
                )
        else:
            self._check_attachment_size(part, size)
        with memoryview(self._buf) as view:
            data = view[start:end]
            if part.file is None:
                part.data += data
            else:
                part.sha256.update(data)
                part.file.write(data)
        part.size += size

    def _check_attachment_size(self, part: _Part, size: int) -> None:
        limits = self._limits
        if part.size + size > limits.max_attachment_bytes:
            raise PayloadTooLarge(
                f"MTOM part {part.index} (<{part.content_id}>) is larger than "
                f"{limits.max_attachment_bytes} bytes"
            )
        self._attachment_total += size
        if self._attachment_total > limits.max_total_attachment_bytes:
            raise PayloadTooLarge(
                f"the MTOM attachments together are larger than "
                f"{limits.max_total_attachment_bytes} bytes"
            )

    def _close_part(self) -> None:
        part, self._part = self._part, None
        if part is None or part.file is None or part.path is None or part.content_id is None:
            return
        part.file.close()
        part.file = None
        self._attachments[part.content_id] = Attachment(
            content_id=part.content_id,
            content_type=part.content_type or "application/octet-stream",
            path=part.path,
            size=part.size,
            sha256=part.sha256.hexdigest(),
        )

    # -- the end --

    def _truncation_reason(self) -> str:
        where = f"MTOM part {self._parts_seen}"
        if self._state is _State.PREAMBLE:
            boundary = self._delimiter[4:].decode("ascii")
            return f"the body never contains its boundary --{boundary}: not an MTOM message"
        if self._state is _State.BODY:
            return f"{where} ends before its boundary: the upload was truncated"
        if self._state is _State.HEADERS:
            return f"the headers of {where} are cut short: the upload was truncated"
        return "the message ends without its closing boundary: the upload was truncated"

    def _message(self) -> MtomMessage:
        root = self._root
        if root is None:
            named = f" named <{self._start}> by the start parameter" if self._start else ""
            raise MalformedMessage(f"the MTOM message has no root part{named}")
        root_type = root.content_type or self._top.get("start-info")
        if root_type is None:
            raise MalformedMessage("the MTOM root part has no Content-Type")
        version, action = soap_version_and_action(self._top, parse_content_type(root_type))
        return MtomMessage(bytes(root.data), root_type, version, action, dict(self._attachments))

    def _check_usable(self) -> None:
        if self._state is _State.FAILED:
            raise MalformedMessage("the MTOM message was already rejected or aborted")
        if self._state is _State.DONE:
            raise RuntimeError("MtomReader.finish() was already called")

    def _discard(self) -> None:
        self._state = _State.FAILED
        part, self._part = self._part, None
        if part is not None and part.file is not None:
            with contextlib.suppress(OSError):  # a failed flush must not stop the clean-up
                part.file.close()
        for path in self._spooled:
            path.unlink(missing_ok=True)
        self._spooled.clear()
        self._attachments.clear()
        # A refused message may live on in a traceback (frames holding this reader and its
        # parts) until a full collection: let go of its bytes now (a root part may be MiBs).
        if self._root is not None:
            self._root.data = bytearray()
        self._root = None
        self._buf = b""
