"""Streaming MTOM/XOP: writer → reader round trips, chunking, limits, failures, other stacks."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lxml import etree  # type: ignore[import-untyped, unused-ignore]

from dynasoar import ns
from dynasoar.errors import MalformedMessage, PayloadTooLarge
from dynasoar.soap.mtom import Attachment, MtomLimits, MtomMessage, MtomReader
from dynasoar.soap.mtom_feed import read_mtom, read_mtom_sync
from dynasoar.soap.mtom_writer import MtomWriter, OutgoingAttachment
from dynasoar.soap.xop import find_xop_includes, verify_digest, xop_include

B = "uuid:0c564667-878f-4d16-8f08-928851656e6e"
DASH = ("--" + B).encode()
ENVELOPE_11 = (
    b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
    b'<u:Upload xmlns:u="urn:t"><u:data><xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/'
    b'include" href="cid:a@x"/></u:data></u:Upload></s:Body></s:Envelope>'
)
ENVELOPE_12 = ENVELOPE_11.replace(
    b"http://schemas.xmlsoap.org/soap/envelope/", ns.SOAP12_ENV.encode()
)
# Bytes that look like a delimiter to a careless parser: every proper prefix of one, a
# delimiter without its CRLF, a close marker mid-line.
TRICKY = (
    b"\r\n--" + B.encode()[:-1] + b"X"
    + b"\r\n-" + b"\r\n--" + b"\r\r\n\n--" + DASH + b"--" + b" " + DASH + b"\r\n"
    + bytes(range(256))
    + b"\r\n--" + B.encode()[:10]
)  # fmt: skip


def _spool_is_empty(spool: Path) -> bool:
    return not spool.exists() or not any(spool.iterdir())


def _chunks(data: bytes, size: int | None) -> list[bytes]:
    if size is None:
        return [data]
    return [data[i : i + size] for i in range(0, len(data), size)]


def _summary(message: MtomMessage) -> dict[str, Any]:
    """Everything a reader produced, files read back, for comparing two parses."""
    return {
        "root": message.root,
        "root_content_type": message.root_content_type,
        "version": message.soap_version,
        "action": message.action,
        "attachments": {
            cid: (a.content_type, a.size, a.sha256, a.path.read_bytes())
            for cid, a in message.attachments.items()
        },
    }


# -- round trips --------------------------------------------------------------------------


@pytest.fixture
def attachments(tmp_path: Path) -> list[OutgoingAttachment]:
    random_file = tmp_path / "random.bin"
    random_file.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    empty_file = tmp_path / "empty.bin"
    empty_file.write_bytes(b"")
    tricky_file = tmp_path / "tricky.bin"
    tricky_file.write_bytes(TRICKY * 1000)
    return [
        OutgoingAttachment("a@x", "application/octet-stream", random_file),
        OutgoingAttachment("empty-file@x", "application/octet-stream", empty_file),
        OutgoingAttachment("empty-bytes@x", "text/plain", b""),
        OutgoingAttachment("tricky@x", "application/x-qemu-disk", tricky_file),
        OutgoingAttachment("small@x", "text/plain; charset=utf-8", b"\r\nhello\r\n"),
    ]


def _expected(source: Path | bytes) -> bytes:
    return source if isinstance(source, bytes) else source.read_bytes()


def _assert_received(
    message: MtomMessage, sent: list[OutgoingAttachment], root: bytes, spool: Path
) -> None:
    assert message.root == root
    assert list(message.attachments) == [a.content_id for a in sent]
    for outgoing in sent:
        received = message.attachments[outgoing.content_id]
        data = _expected(outgoing.source)
        assert received.content_type == outgoing.content_type
        assert received.size == len(data)
        assert received.sha256 == hashlib.sha256(data).hexdigest()
        assert received.path.read_bytes() == data
        assert received.path.parent == spool
        assert stat.S_IMODE(received.path.stat().st_mode) == 0o600
        verify_digest(received, hashlib.sha256(data).hexdigest().upper())


@pytest.mark.parametrize(
    ("version", "root", "action"),
    [("1.1", ENVELOPE_11, None), ("1.2", ENVELOPE_12, "urn:t:Upload")],
)
@pytest.mark.parametrize("chunk_size", [1000, 64 * 1024, 1024 * 1024])
def test_round_trip_sync(
    tmp_path: Path,
    attachments: list[OutgoingAttachment],
    version: str,
    root: bytes,
    action: str | None,
    chunk_size: int,
) -> None:
    writer = MtomWriter(root, attachments, version, action=action, boundary=B)
    spool = tmp_path / "spool"
    with read_mtom_sync(writer.iter_chunks(chunk_size), writer.content_type, spool) as message:
        _assert_received(message, attachments, root, spool)
        assert message.soap_version == version
        assert message.action == action
        assert message.root_content_type.startswith("application/xop+xml; charset=UTF-8")
    assert _spool_is_empty(spool)


@pytest.mark.parametrize("batch_bytes", [1, 256 * 1024, 64 * 1024 * 1024])
def test_round_trip_async(
    tmp_path: Path, attachments: list[OutgoingAttachment], batch_bytes: int
) -> None:
    writer = MtomWriter(ENVELOPE_12, attachments, "1.2", action="urn:t:Upload")
    spool = tmp_path / "spool"

    async def main() -> MtomMessage:
        chunks = writer.aiter_chunks(chunk_size=100_000)
        return await read_mtom(
            chunks, writer.content_type, spool, MtomLimits(), batch_bytes=batch_bytes
        )

    message = asyncio.run(main())
    _assert_received(message, attachments, ENVELOPE_12, spool)
    assert (message.soap_version, message.action) == ("1.2", "urn:t:Upload")
    message.close()
    assert _spool_is_empty(spool)


def test_root_only_message(tmp_path: Path) -> None:
    writer = MtomWriter(ENVELOPE_11, [], "1.1")
    message = read_mtom_sync(writer.iter_chunks(), writer.content_type, tmp_path)
    assert (message.root, message.attachments) == (ENVELOPE_11, {})


# -- writer -------------------------------------------------------------------------------


def test_content_length_is_the_bytes_produced(
    attachments: list[OutgoingAttachment],
) -> None:
    writer = MtomWriter(ENVELOPE_11, attachments, "1.1", action="urn:a")
    progress: list[tuple[int, int]] = []
    produced = b"".join(writer.iter_chunks(4096, on_progress=lambda s, t: progress.append((s, t))))
    assert len(produced) == writer.content_length
    assert progress[-1] == (writer.content_length, writer.content_length)
    assert [s for s, _ in progress] == sorted({s for s, _ in progress})

    async def collect() -> bytes:
        return b"".join([c async for c in writer.aiter_chunks(4096)])

    assert asyncio.run(collect()) == produced
    assert ("Content-Length", str(writer.content_length)) in writer.http_headers
    assert ("SOAPAction", '"urn:a"') in writer.http_headers


def test_chunks_respect_chunk_size(attachments: list[OutgoingAttachment]) -> None:
    writer = MtomWriter(ENVELOPE_11, attachments, "1.1")
    assert max(len(c) for c in writer.iter_chunks(65536)) <= 65536
    assert all(writer.iter_chunks(65536))  # never an empty chunk


def test_soap12_writer_headers() -> None:
    writer = MtomWriter(ENVELOPE_12, [], "1.2", action="urn:a", boundary=B)
    assert writer.content_type == (
        'multipart/related; type="application/xop+xml"; start="<root.message@dynasoar>"; '
        f'start-info="application/soap+xml; action=\\"urn:a\\""; boundary="{B}"'
    )
    assert not any(name == "SOAPAction" for name, _ in writer.http_headers)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"boundary": "bad\r\nboundary"}, "not a valid MIME boundary"),
        ({"boundary": "in-root"}, "occurs in the content"),
        ({"soap_version": "1.3"}, "soap_version"),
        ({"attachments": [OutgoingAttachment("<a>", "a/b", b"")]}, "not a usable Content-ID"),
        ({"attachments": [OutgoingAttachment("a b", "a/b", b"")]}, "not a usable Content-ID"),
        ({"attachments": [OutgoingAttachment("a", "a/b\r\nX: y", b"")]}, "one header line"),
        ({"attachments": [OutgoingAttachment("é@x", "a/b", b"")]}, "not a usable Content-ID"),
        ({"action": "urn:a\r\nX-Injected: 1"}, "cannot go into an HTTP header"),
        ({"attachments": [OutgoingAttachment("a", "a/b", b"")] * 2}, "used twice"),
        (
            {"attachments": [OutgoingAttachment("root.message@dynasoar", "a/b", b"")]},
            "used twice",
        ),
    ],
)
def test_writer_refuses(kwargs: dict[str, Any], reason: str) -> None:
    arguments: dict[str, Any] = {"root_xml": b"<x>\r\n--in-root</x>", "soap_version": "1.1"}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=reason):
        MtomWriter(**arguments)


def test_writer_notices_a_file_that_changed_size(tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"x" * 100)
    writer = MtomWriter(ENVELOPE_11, [OutgoingAttachment("f@x", "a/b", source)], "1.1")
    source.write_bytes(b"x" * 10)
    with pytest.raises(OSError, match="shrank"):
        b"".join(writer.iter_chunks())
    source.write_bytes(b"x" * 200)
    with pytest.raises(OSError, match="changed size"):
        b"".join(writer.iter_chunks())

    async def collect() -> None:
        async for _ in writer.aiter_chunks():
            pass

    with pytest.raises(OSError, match="changed size"):
        asyncio.run(collect())


# -- chunking -----------------------------------------------------------------------------


def _small_message() -> tuple[str, bytes]:
    writer = MtomWriter(
        ENVELOPE_12,
        [
            OutgoingAttachment("t@x", "application/octet-stream", TRICKY[:300]),
            OutgoingAttachment("e@x", "application/octet-stream", b""),
            OutgoingAttachment("c@x", "application/octet-stream", b"\r\n\r\n--"),
        ],
        "1.2",
        action="urn:a",
        boundary=B,
    )
    return writer.content_type, b"".join(writer.iter_chunks())


SMALL_TYPE, SMALL = _small_message()


def _parse(chunks: Iterable[bytes], content_type: str = SMALL_TYPE) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as spool,
        read_mtom_sync(chunks, content_type, Path(spool)) as message,
    ):
        summary = _summary(message)
    return summary


SMALL_PARSED = _parse([SMALL])


def test_every_two_way_split_parses_identically() -> None:
    for cut in range(len(SMALL) + 1):
        assert _parse([SMALL[:cut], SMALL[cut:]]) == SMALL_PARSED, cut


def test_byte_by_byte_parses_identically() -> None:
    assert _parse(_chunks(SMALL, 1)) == SMALL_PARSED


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, len(SMALL)), max_size=40))
def test_random_chunkings_parse_identically(cuts: list[int]) -> None:
    edges = [0, *sorted(cuts), len(SMALL)]
    assert _parse(SMALL[a:b] for a, b in itertools.pairwise(edges)) == SMALL_PARSED


_fragments = st.sampled_from(
    [b"\r", b"\n", b"-", b"--", b"\r\n", b"\r\n--", B.encode()[:5], B.encode()[:-1], b"x", b"\0"]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(_fragments, max_size=30).map(b"".join), min_size=1, max_size=4),
    st.integers(1, 64),
)
def test_round_trip_of_delimiter_like_data(datas: list[bytes], chunk_size: int) -> None:
    assume(all(b"\r\n" + DASH not in data and not data.startswith(DASH) for data in datas))
    sent = [OutgoingAttachment(f"p{i}@x", "a/b", data) for i, data in enumerate(datas)]
    writer = MtomWriter(ENVELOPE_11, sent, "1.1", boundary=B)
    parsed = _parse(_chunks(b"".join(writer.iter_chunks()), chunk_size), writer.content_type)
    assert [v[3] for v in parsed["attachments"].values()] == datas


# -- framing the RFC allows ---------------------------------------------------------------

ROOT_HEADERS = (
    'Content-Type: application/xop+xml; charset=UTF-8; type="text/xml"\r\n'
    "Content-Transfer-Encoding: binary\r\n"
    "Content-ID: <root@x>"
)
CT = (
    'multipart/related; type="application/xop+xml"; start="<root@x>"; '
    f'start-info="text/xml"; boundary="{B}"'
)


def _part(headers: str, body: bytes) -> bytes:
    return DASH + b"\r\n" + headers.encode() + b"\r\n\r\n" + body + b"\r\n"


def _att(cid: str, body: bytes, extra: str = "") -> bytes:
    return _part(f"Content-Type: application/octet-stream\r\nContent-ID: <{cid}>{extra}", body)


def _message(*parts: bytes, close: bool = True) -> bytes:
    return b"".join(parts) + (DASH + b"--\r\n" if close else b"")


GOOD = _message(_part(ROOT_HEADERS, ENVELOPE_11), _att("a@x", b"hello"))


def test_preamble_epilogue_and_transport_padding(tmp_path: Path) -> None:
    body = (
        b"This is a MIME preamble, ignored.\r\n--not-the-boundary\r\n"
        + DASH + b" \t \r\n" + ROOT_HEADERS.encode() + b"\r\n\r\n" + ENVELOPE_11
        + b"\r\n" + DASH + b"\t\r\n" + b"Content-ID: <a@x>\r\n\r\nhello"
        + b"\r\n" + DASH + b"--  \r\nEpilogue, also ignored, even " + DASH + b"\r\n"
    )  # fmt: skip
    message = read_mtom_sync(_chunks(body, 3), CT, tmp_path)
    assert message.root == ENVELOPE_11
    assert message.attachments["a@x"].path.read_bytes() == b"hello"
    assert message.attachments["a@x"].content_type == "application/octet-stream"


def test_close_delimiter_at_the_very_end(tmp_path: Path) -> None:
    message = read_mtom_sync([GOOD.removesuffix(b"\r\n")], CT, tmp_path)
    assert message.attachments["a@x"].size == 5


def test_root_named_by_start_need_not_come_first(tmp_path: Path) -> None:
    body = _message(_att("a@x", b"data"), _part(ROOT_HEADERS, ENVELOPE_11))
    message = read_mtom_sync([body], CT, tmp_path)
    assert (message.root, list(message.attachments)) == (ENVELOPE_11, ["a@x"])


def test_without_start_the_first_part_is_the_root(tmp_path: Path) -> None:
    content_type = f'multipart/related; type="application/xop+xml"; boundary="{B}"'
    root_headers = 'Content-Type: application/xop+xml; type="application/soap+xml"'
    body = _message(_part(root_headers, ENVELOPE_12), _att("a@x", b"data"))
    message = read_mtom_sync([body], content_type, tmp_path)
    assert (message.root, message.soap_version) == (ENVELOPE_12, "1.2")


def test_root_without_content_type_falls_back_to_start_info(tmp_path: Path) -> None:
    body = _message(_part("Content-ID: <root@x>", ENVELOPE_11))
    assert read_mtom_sync([body], CT, tmp_path).soap_version == "1.1"


# -- failures -----------------------------------------------------------------------------

ROOT = _part(ROOT_HEADERS, ENVELOPE_11)
BIG = _message(ROOT, _att("a@x", b"x" * 100), _att("b@x", b"y" * 60))
CUT_IN_HEADERS = GOOD.index(b"Content-ID: <a@x>") + 5
ROOT_TO_PNG = ROOT_HEADERS.replace(ROOT_HEADERS.splitlines()[0], "Content-Type: image/png")

FAILURES: list[tuple[str, bytes, MtomLimits, type[Exception], str]] = [
    ("truncated", BIG[:-50], MtomLimits(), MalformedMessage,
     "MTOM part 3 ends before its boundary: the upload was truncated"),
    ("no-close-delimiter", _message(ROOT, _att("a@x", b"h"), close=False),
     MtomLimits(), MalformedMessage, "MTOM part 2 ends before its boundary"),
    ("ends-after-delimiter", GOOD[: -len(b"--\r\n")], MtomLimits(), MalformedMessage,
     "ends without its closing boundary"),
    ("ends-in-headers", GOOD[:CUT_IN_HEADERS], MtomLimits(), MalformedMessage,
     "headers of MTOM part 2 are cut short"),
    ("empty-body", b"", MtomLimits(), MalformedMessage, "never contains its boundary"),
    ("no-boundary", b"<s:Envelope/>\r\n--other--\r\n", MtomLimits(), MalformedMessage,
     "never contains its boundary"),
    ("junk-after-boundary", GOOD.replace(DASH + b"\r\nContent-Type: application/oc",
                                         DASH + b"junk\r\nContent-Type: application/oc"),
     MtomLimits(), MalformedMessage, "followed by unexpected characters b'ju"),
    ("endless-padding", DASH + b" " * 5000, MtomLimits(), MalformedMessage, "unexpected"),
    ("oversize-part", BIG, MtomLimits(max_attachment_bytes=99), PayloadTooLarge,
     r"MTOM part 2 \(<a@x>\) is larger than 99 bytes"),
    ("oversize-total", BIG, MtomLimits(max_total_attachment_bytes=159), PayloadTooLarge,
     "attachments together are larger than 159 bytes"),
    ("oversize-root", BIG, MtomLimits(max_root_bytes=100), PayloadTooLarge,
     "root part is larger than 100 bytes"),
    ("oversize-body", BIG, MtomLimits(max_body_bytes=len(BIG) - 1), PayloadTooLarge,
     "message is larger than"),
    ("too-many-parts", BIG, MtomLimits(max_parts=2), PayloadTooLarge, "more than 2 parts"),
    ("header-too-long", _message(ROOT, _att("a@x", b"", "\r\nX: " + "y" * 9000)),
     MtomLimits(), PayloadTooLarge, "headers of MTOM part 2 are longer than 8192 bytes"),
    ("too-many-headers", _message(ROOT, _att("a@x", b"", "\r\nX: 1" * 40)),
     MtomLimits(), PayloadTooLarge, "MTOM part 2 has more than 32 headers"),
    ("duplicate-content-id", _message(ROOT, _att("a@x", b"1"), _att("a@x", b"2")),
     MtomLimits(), MalformedMessage, "MTOM part 3 repeats the Content-ID <a@x>"),
    ("duplicate-root-id", _message(ROOT, _att("root@x", b"1")),
     MtomLimits(), MalformedMessage, "repeats the Content-ID <root@x>"),
    ("base64", _message(ROOT, _att("a@x", b"aGk=", "\r\nContent-Transfer-Encoding: base64")),
     MtomLimits(), MalformedMessage, "Content-Transfer-Encoding 'base64'"),
    ("missing-root", _message(_att("a@x", b"1")), MtomLimits(), MalformedMessage,
     "no root part named <root@x>"),
    ("no-content-id", _message(ROOT, _part("Content-Type: a/b", b"1")),
     MtomLimits(), MalformedMessage, "MTOM part 2 has no Content-ID"),
    ("root-not-soap", _message(_part(ROOT_TO_PNG, b"\x89PNG")), MtomLimits(), MalformedMessage,
     "root part is image/png, not a SOAP envelope"),
    ("bad-header-line", _message(ROOT, _part("Content-ID <a@x>", b"")),
     MtomLimits(), MalformedMessage, "MTOM part 2 has a header line"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "limits", "error", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in FAILURES],
)
@pytest.mark.parametrize("chunk_size", [1, 7, None])
def test_failure_leaves_nothing_behind(
    tmp_path: Path,
    body: bytes,
    limits: MtomLimits,
    error: type[Exception],
    reason: str,
    chunk_size: int | None,
) -> None:
    spool = tmp_path / "spool"
    with pytest.raises(error, match=reason):
        read_mtom_sync(_chunks(body, chunk_size), CT, spool, limits)
    assert _spool_is_empty(spool)


@pytest.mark.parametrize(
    ("content_type", "reason"),
    [
        ("text/xml; charset=utf-8", "expected an MTOM message"),
        ("application/octet-stream", "expected an MTOM message"),
        ('multipart/related; type="application/xop+xml"', "no boundary parameter"),
        (f'multipart/related; type="text/plain"; boundary="{B}"', "not an MTOM message"),
    ],
)
def test_wrong_content_type(tmp_path: Path, content_type: str, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        read_mtom_sync([GOOD], content_type, tmp_path)
    assert _spool_is_empty(tmp_path)


def test_a_failed_reader_stays_failed(tmp_path: Path) -> None:
    reader = MtomReader(CT, tmp_path, MtomLimits(max_parts=1))
    with pytest.raises(PayloadTooLarge):
        reader.feed(GOOD)
    with pytest.raises(MalformedMessage, match="already rejected"):
        reader.feed(b"more")
    with pytest.raises(MalformedMessage, match="already rejected"):
        reader.finish()


def test_abort_deletes_finished_and_unfinished_parts(tmp_path: Path) -> None:
    reader = MtomReader(CT, tmp_path)
    reader.feed(_part(ROOT_HEADERS, ENVELOPE_11) + _att("a@x", b"done") + _att("b@x", b"half"))
    assert len(list(tmp_path.iterdir())) == 2
    reader.abort()
    reader.abort()  # idempotent
    assert _spool_is_empty(tmp_path)


def test_abort_after_finish_keeps_the_files(tmp_path: Path) -> None:
    reader = MtomReader(CT, tmp_path)
    reader.feed(GOOD)
    message = reader.finish()
    reader.abort()
    assert message.attachments["a@x"].path.read_bytes() == b"hello"
    with pytest.raises(RuntimeError, match="already called"):
        reader.feed(b"")
    message.attachments["a@x"].delete()
    message.attachments["a@x"].delete()  # already gone: fine
    assert _spool_is_empty(tmp_path)


async def _stream(body: bytes, chunk_size: int, then: BaseException | None) -> AsyncIterator[bytes]:
    for chunk in _chunks(body, chunk_size):
        yield chunk
        await asyncio.sleep(0)
    if then is not None:
        raise then


def test_async_stream_error_leaves_nothing_behind(tmp_path: Path) -> None:
    body = _message(_part(ROOT_HEADERS, ENVELOPE_11), _att("a@x", b"z" * 500_000), close=False)

    async def main() -> None:
        chunks = _stream(body, 10_000, ConnectionResetError("peer went away"))
        await read_mtom(chunks, CT, tmp_path, batch_bytes=50_000)

    with pytest.raises(ConnectionResetError):
        asyncio.run(main())
    assert _spool_is_empty(tmp_path)


def test_async_limit_hit_in_worker_thread_leaves_nothing_behind(tmp_path: Path) -> None:
    body = _message(_part(ROOT_HEADERS, ENVELOPE_11), _att("a@x", b"z" * 500_000))

    async def main() -> None:
        limits = MtomLimits(max_attachment_bytes=100_000)
        await read_mtom(_stream(body, 10_000, None), CT, tmp_path, limits, batch_bytes=50_000)

    with pytest.raises(PayloadTooLarge):
        asyncio.run(main())
    assert _spool_is_empty(tmp_path)


def test_async_cancellation_leaves_nothing_behind(tmp_path: Path) -> None:
    async def endless() -> AsyncIterator[bytes]:
        yield _part(ROOT_HEADERS, ENVELOPE_11) + DASH + b"\r\nContent-ID: <a@x>\r\n\r\n"
        while True:
            yield b"z" * 65536
            await asyncio.sleep(0)

    async def main() -> None:
        task = asyncio.create_task(read_mtom(endless(), CT, tmp_path, batch_bytes=100_000))
        while _spool_is_empty(tmp_path) or os.path.getsize(next(tmp_path.iterdir())) < 10**6:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert _spool_is_empty(tmp_path)


# -- XOP ----------------------------------------------------------------------------------


def test_xop_include_round_trips_content_ids_that_need_escaping() -> None:
    cid = "http://tempuri.org/1/63 2%ü@x"
    include = xop_include(cid)
    assert include.tag == f"{{{ns.XOP}}}Include"
    assert include.get("href") == "cid:http://tempuri.org/1/63%202%25%C3%BC@x"
    holder = etree.Element("{urn:t}data")
    holder.append(include)
    [(element, found)] = find_xop_includes(holder)
    assert (element, found) == (include, cid)


def test_find_xop_includes_in_an_envelope() -> None:
    root = etree.fromstring(ENVELOPE_11)
    assert [cid for _, cid in find_xop_includes(root)] == ["a@x"]


@pytest.mark.parametrize("href", ["http://example.org/a", "", "a@x"])
def test_find_xop_includes_refuses_non_cid_urls(href: str) -> None:
    root = etree.fromstring(f'<d xmlns:xop="{ns.XOP}"><xop:Include href="{href}"/></d>')
    with pytest.raises(MalformedMessage, match="not a cid: URL"):
        find_xop_includes(root)


def test_verify_digest_refuses_a_mismatch(tmp_path: Path) -> None:
    attachment = Attachment("a@x", "a/b", tmp_path / "a", 3, hashlib.sha256(b"abc").hexdigest())
    verify_digest(attachment, hashlib.sha256(b"abc").hexdigest())
    with pytest.raises(MalformedMessage, match="corrupted or replaced in transit"):
        verify_digest(attachment, hashlib.sha256(b"abd").hexdigest())


# -- other stacks (hand-written in the shape each one sends) ------------------------------

CXF_CT = (
    'multipart/related; type="application/xop+xml"; '
    'boundary="uuid:6b62cda8-6c5c-4b1c-8a40-2a2d0c9e4f1a"; '
    'start="<root.message@cxf.apache.org>"; start-info="text/xml"'
)
CXF_BODY = (
    b"--uuid:6b62cda8-6c5c-4b1c-8a40-2a2d0c9e4f1a\r\n"
    b'Content-Type: application/xop+xml; charset=UTF-8; type="text/xml"\r\n'
    b"Content-Transfer-Encoding: binary\r\n"
    b"Content-ID: <root.message@cxf.apache.org>\r\n"
    b"\r\n"
    b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
    b'<ns2:upload xmlns:ns2="urn:demo"><data><xop:Include '
    b'xmlns:xop="http://www.w3.org/2004/08/xop/include" '
    b'href="cid:5aeaa450-17f0-4484-b845-a8480c363444-1@cxf.apache.org"/></data></ns2:upload>'
    b"</soap:Body></soap:Envelope>\r\n"
    b"--uuid:6b62cda8-6c5c-4b1c-8a40-2a2d0c9e4f1a\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"Content-ID: <5aeaa450-17f0-4484-b845-a8480c363444-1@cxf.apache.org>\r\n"
    b"\r\n"
    b"\x00\x01\x02binary\r\n\xff\r\n"
    b"--uuid:6b62cda8-6c5c-4b1c-8a40-2a2d0c9e4f1a--"
)

WCF_CT = (
    'multipart/related; type="application/xop+xml";start="<http://tempuri.org/0>";'
    'boundary="uuid:0ca0e16e-feb1-426c-97d8-c4508ada5e82+id=1";'
    'start-info="application/soap+xml"'
)
WCF_BODY = (
    b"--uuid:0ca0e16e-feb1-426c-97d8-c4508ada5e82+id=1\r\n"
    b"Content-ID: <http://tempuri.org/0>\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b'Content-Type: application/xop+xml;charset=utf-8;type="application/soap+xml;'
    b'action=\\"http://tempuri.org/IUpload/Put\\""\r\n'
    b"\r\n"
    b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>'
    b'<Put xmlns="http://tempuri.org/"><data><xop:Include '
    b'href="cid:http%3A%2F%2Ftempuri.org%2F1%2F638601234567890123" '
    b'xmlns:xop="http://www.w3.org/2004/08/xop/include"/></data></Put></s:Body></s:Envelope>\r\n'
    b"--uuid:0ca0e16e-feb1-426c-97d8-c4508ada5e82+id=1\r\n"
    b"Content-ID: <http://tempuri.org/1/638601234567890123>\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"\r\n"
    b"\x00\x01\x02binary\r\n\xff\r\n"
    b"--uuid:0ca0e16e-feb1-426c-97d8-c4508ada5e82+id=1--\r\n"
)

AXIS2_BOUNDARY = "MIMEBoundary_4e7d2a3c1b5f6e8d9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d"
AXIS2_CT = (
    f'multipart/related; boundary={AXIS2_BOUNDARY}; type="application/xop+xml"; '
    'start="<0.urn:uuid:2A7C6F5E1B3D4A9C8E7F6A5B4C3D2E1F@apache.org>"; '
    'start-info="application/soap+xml"; action="urn:upload"'
)
AXIS2_BODY = (
    b"\r\n--" + AXIS2_BOUNDARY.encode() + b"\r\n"
    b'Content-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\r\n'
    b"Content-Transfer-Encoding: binary\r\n"
    b"Content-ID: <0.urn:uuid:2A7C6F5E1B3D4A9C8E7F6A5B4C3D2E1F@apache.org>\r\n"
    b"\r\n"
    b'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
    b'xmlns:soapenv="http://www.w3.org/2003/05/soap-envelope"><soapenv:Body><ns:upload '
    b'xmlns:ns="urn:demo"><ns:data><xop:Include '
    b'xmlns:xop="http://www.w3.org/2004/08/xop/include" '
    b'href="cid:1.urn:uuid:3B8D7A6F2C4E5B0D9F8A7B6C5D4E3F2A@apache.org"/></ns:data></ns:upload>'
    b"</soapenv:Body></soapenv:Envelope>\r\n"
    b"--" + AXIS2_BOUNDARY.encode() + b"\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"Content-ID: <1.urn:uuid:3B8D7A6F2C4E5B0D9F8A7B6C5D4E3F2A@apache.org>\r\n"
    b"\r\n"
    b"\x00\x01\x02binary\r\n\xff\r\n"
    b"--" + AXIS2_BOUNDARY.encode() + b"--\r\n"
)


@pytest.mark.parametrize(
    ("content_type", "body", "version", "action"),
    [
        pytest.param(CXF_CT, CXF_BODY, "1.1", None, id="cxf"),
        pytest.param(WCF_CT, WCF_BODY, "1.2", "http://tempuri.org/IUpload/Put", id="wcf"),
        pytest.param(AXIS2_CT, AXIS2_BODY, "1.2", "urn:upload", id="axis2"),
    ],
)
@pytest.mark.parametrize("chunk_size", [5, None])
def test_other_stacks(
    tmp_path: Path,
    content_type: str,
    body: bytes,
    version: str,
    action: str | None,
    chunk_size: int | None,
) -> None:
    with read_mtom_sync(_chunks(body, chunk_size), content_type, tmp_path) as message:
        assert (message.soap_version, message.action) == (version, action)
        root = etree.fromstring(message.root)
        [(_, cid)] = find_xop_includes(root)
        attachment = message.attachments[cid]
        assert attachment.path.read_bytes() == b"\x00\x01\x02binary\r\n\xff"
        assert attachment.content_type == "application/octet-stream"
    assert _spool_is_empty(tmp_path)


# -- memory -------------------------------------------------------------------------------

# Runs in its own process so VmHWM (peak RSS) is this transfer's and nothing else's.
_BIG_ROUND_TRIP = r"""
import asyncio, json, sys
from pathlib import Path
from dynasoar.soap.mtom_feed import read_mtom, read_mtom_sync
from dynasoar.soap.mtom_writer import MtomWriter, OutgoingAttachment

def peak_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

size, source, spool, mode = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
with open(source, "wb") as f:
    f.truncate(size)  # sparse: reads as zeros, costs no disk
writer = MtomWriter(b"<e/>", [OutgoingAttachment("big@x", "application/octet-stream", source)])
before = peak_kib()
if mode == "sync":
    message = read_mtom_sync(writer.iter_chunks(), writer.content_type, spool)
else:
    message = asyncio.run(read_mtom(writer.aiter_chunks(), writer.content_type, spool))
after = peak_kib()
big = message.attachments["big@x"]
print(json.dumps({"growth_kib": after - before, "size": big.size, "sha256": big.sha256,
                  "on_disk": big.path.stat().st_size}))
message.close()
"""
_GIB_OF_ZEROS_SHA256 = "49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_one_gib_round_trip_in_bounded_memory(tmp_path: Path, mode: str) -> None:
    size = 1024**3
    run = subprocess.run(
        [sys.executable, "-c", _BIG_ROUND_TRIP, str(size), str(tmp_path / "src"),
         str(tmp_path / "spool"), mode],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    result = json.loads(run.stdout)
    assert result["size"] == result["on_disk"] == size
    assert result["sha256"] == _GIB_OF_ZEROS_SHA256
    assert result["growth_kib"] < 64 * 1024, result
    assert _spool_is_empty(tmp_path / "spool")
