"""Property-based fuzzing of the parsers every message meets first: the envelope (whole and
head-only), WS-Addressing (codec and rules) and the MTOM reader.

Arbitrary and mutated input must parse or raise a DynasoarError, never anything else; never
hang (a faulthandler alarm ends the run with every thread's stack if one does); never leave
a spooled file behind. Where a round trip holds, it is checked: envelopes built and parsed
back, addressing headers written and read back, MTOM messages written and read back however
the bytes are split.
"""

from __future__ import annotations

import faulthandler
import hashlib
import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from dynasoar import ns
from dynasoar.errors import AddressingFault, DynasoarError, MalformedMessage, PayloadTooLarge
from dynasoar.soap import addressing
from dynasoar.soap.addressing_rules import EndpointRules, check_request, soap_action_of
from dynasoar.soap.envelope import (
    Envelope,
    HeadParser,
    SoapVersion,
    build_envelope,
    parse_envelope,
    serialize,
)
from dynasoar.soap.mime import parse_content_type
from dynasoar.soap.mtom import MtomLimits, MtomReader
from dynasoar.soap.mtom_writer import MtomWriter, OutgoingAttachment

from . import payloads as P

FUZZ = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: No single test may take longer than this; past it faulthandler dumps every stack and exits.
HANG_SECONDS = 120


@pytest.fixture(autouse=True)
def hang_guard() -> Iterator[None]:
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


# -- inputs -------------------------------------------------------------------------------

SEEDS = [
    P.soap("1.1", P.echo()),
    P.soap("1.2", P.echo(b"x" * 50), P.wsa("http://sp/services/Echo", P.ECHO_ACTION)),
    P.soap("1.2", P.list_services(), P.unknown_header("1.2") + P.wsa("http://sp", "urn:a")),
    P.soap("1.1", b"", b"<x:h xmlns:x='urn:x' a='1'><![CDATA[<a>]]]]><![CDATA[>]]></x:h>"),
    b"<?xml version='1.0' encoding='utf-8'?>\n" + P.soap("1.2", P.hp_op_bytes("Status")),
]
#: Bytes that mean something to an XML or MIME parser, for insertion.
TOKENS = [
    b"<",
    b">",
    b"&",
    b"&amp;",
    b"&#0;",
    b"&#x110000;",
    b"]]>",
    b"<!DOCTYPE s:Envelope [<!ENTITY e 'x'>]>",
    b'<!DOCTYPE s SYSTEM "file:///dev/zero">',
    b"<![CDATA[",
    b"<?pi x?>",
    b"<!--",
    b"-->",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"\r\n",
    b'xmlns:s="urn:other"',
    b"</s:Body>",
    b"<s:Body>",
    b"<s:Header>",
    b"\r\n--" + P.BOUNDARY.encode(),
    b"\r\n--" + P.BOUNDARY.encode() + b"--",
    b"Content-Type: text/xml\r\n\r\n",
]

mutation = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate"]),
    st.floats(0, 1),
    st.sampled_from(TOKENS) | st.binary(min_size=1, max_size=8),
)


def mutate(data: bytes, ops: list[tuple[str, float, bytes]]) -> bytes:
    for kind, where, token in ops:
        at = int(where * len(data))
        if kind == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ (token[0] or 1)]) + data[at + 1 :]
        elif kind == "insert":
            data = data[:at] + token + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + len(token) :]
        elif kind == "truncate":
            data = data[:at]
        elif kind == "duplicate":
            data = data[:at] + data[at : at + 64] + data[at:]
    return data


mutated_envelopes = st.builds(mutate, st.sampled_from(SEEDS), st.lists(mutation, max_size=6))
any_bytes = st.binary(max_size=1024) | mutated_envelopes
#: Split points of a byte string, as fractions.
splits = st.lists(st.floats(0, 1), max_size=8)


def chunks(data: bytes, fractions: list[float]) -> list[bytes]:
    cuts = sorted({int(f * len(data)) for f in fractions} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(cuts)] or [b""]


# -- the envelope ---------------------------------------------------------------------------


def _head(data: bytes, fractions: list[float], limit: int = 256 * 1024) -> Envelope:
    parser = HeadParser(limit)
    for piece in chunks(data, fractions):
        result = parser.feed(piece)
        if result is not None:
            return result
    return parser.close()


def _summary(envelope: Envelope) -> tuple[object, ...]:
    return (
        envelope.version,
        [block.tag for block in envelope.header_blocks],
        envelope.body_qname,
    )


@FUZZ
@given(any_bytes)
def test_parse_envelope_parses_or_refuses(data: bytes) -> None:
    try:
        envelope = parse_envelope(data)
    except DynasoarError:
        return
    assert envelope.body is not None
    assert not envelope.root.getroottree().docinfo.internalDTD


@FUZZ
@given(any_bytes, splits, st.sampled_from([64, 512, 256 * 1024]))
@example(b'<s:A xmlns:s="}" A="">', [], 64)  # a namespace URI lxml's QName refuses
def test_head_parser_parses_or_refuses(data: bytes, fractions: list[float], limit: int) -> None:
    try:
        envelope = _head(data, fractions, limit)
    except DynasoarError:
        return
    assert envelope.version in (SoapVersion.SOAP11, SoapVersion.SOAP12)


@FUZZ
@given(st.sampled_from(SEEDS), splits)
def test_head_parser_reads_what_the_whole_parser_reads(data: bytes, fractions: list[float]) -> None:
    """A well-formed envelope reads the same however the network cut it, and as a whole."""
    whole = parse_envelope(data)
    assert _summary(_head(data, fractions)) == _summary(whole)


_names = st.sampled_from(["a", "b", "Echo", "x-y", "_z", "ns.q"])
_spaces = st.sampled_from(["urn:a", "urn:b", "http://example.org/x", ns.WSA, ""])
_xml_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff")
    | st.sampled_from("\t\n"),
    max_size=30,
)


@st.composite
def elements(draw: st.DrawFn, depth: int = 2) -> etree._Element:
    space, name = draw(_spaces), draw(_names)
    element = etree.Element(f"{{{space}}}{name}" if space else name)
    element.text = draw(_xml_text) or None
    for key in draw(st.lists(_names, max_size=3, unique=True)):
        element.set(key, draw(_xml_text))
    if depth:
        for child in draw(st.lists(elements(depth - 1), max_size=3)):
            element.append(child)
    return element


@FUZZ
@given(
    st.sampled_from([SoapVersion.SOAP11, SoapVersion.SOAP12]),
    elements(),
    st.lists(elements(1), max_size=4),
    splits,
)
def test_envelopes_round_trip(
    version: SoapVersion, body: etree._Element, blocks: list[etree._Element], fractions: list[float]
) -> None:
    tags = [block.tag for block in blocks]
    data = serialize(build_envelope(version, [body], blocks))
    envelope = parse_envelope(data)
    assert _summary(envelope) == (version, tags, body.tag)
    assert _summary(_head(data, fractions)) == _summary(envelope)
    assert etree.tostring(envelope.body[0], method="c14n") == etree.tostring(body, method="c14n")


# -- WS-Addressing --------------------------------------------------------------------------

_wsa_spaces = st.sampled_from([ns.WSA, ns.WSA_2004])
_wsa_names = st.sampled_from(
    ["To", "Action", "MessageID", "RelatesTo", "ReplyTo", "FaultTo", "From", "Address", "Junk"]
)


@st.composite
def wsa_blocks(draw: st.DrawFn) -> list[etree._Element]:
    """Header blocks in (mostly) WS-Addressing namespaces, well-formed or not."""
    out = []
    for _ in range(draw(st.integers(0, 8))):
        space = draw(_wsa_spaces | _spaces)
        block = etree.Element(f"{{{space}}}{draw(_wsa_names)}" if space else "Loose")
        block.text = draw(_xml_text) or None
        if draw(st.booleans()):
            block.set("RelationshipType", draw(_xml_text))
        for _ in range(draw(st.integers(0, 2))):
            child = etree.SubElement(block, f"{{{draw(_wsa_spaces)}}}{draw(_wsa_names)}")
            child.text = draw(_xml_text) or None
            if draw(st.booleans()):
                child.append(draw(elements(0)))
        out.append(block)
    return out


_actions = st.sampled_from([P.ECHO_ACTION, "urn:a", ""])
_rules = st.builds(
    EndpointRules,
    required=st.booleans(),
    actions=st.none() | st.sets(_actions),
    expects_reply=st.sampled_from([lambda a: True, lambda a: False, lambda a: a == "urn:a"]),
    is_destination=st.sampled_from([lambda to: True, lambda to: False]),
)


@FUZZ
@given(wsa_blocks(), st.none() | _xml_text, _rules)
def test_addressing_reads_anything_and_refuses_only_with_its_own_faults(
    blocks: list[etree._Element], soap_action: str | None, rules: EndpointRules
) -> None:
    headers = addressing.read_headers(blocks)
    assert headers.present == any(
        isinstance(b.tag, str) and b.tag.startswith((f"{{{ns.WSA}}}", f"{{{ns.WSA_2004}}}"))
        for b in blocks
    )
    try:
        check_request(headers, soap_action, rules)
    except AddressingFault:
        pass


@FUZZ
@given(st.text(max_size=80), st.none() | st.text(max_size=40))
def test_transport_actions_never_raise(content_type: str, soapaction: str | None) -> None:
    action = soap_action_of(content_type, soapaction)
    assert action is None or isinstance(action, str)


_values = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=40
).filter(lambda v: v == v.strip())
_epr = st.builds(
    addressing.EndpointReference,
    _values,
    st.lists(elements(0).filter(lambda e: e.tag.startswith("{urn")), max_size=2).map(tuple),
)


@FUZZ
@given(
    _wsa_spaces,
    st.none() | _values,
    st.none() | _values,
    st.none() | _values,
    st.lists(st.tuples(_values, st.just(addressing.REPLY_RELATIONSHIP) | _values), max_size=3),
    st.none() | _epr,
    st.none() | _epr,
)
def test_addressing_round_trips(
    space: str,
    to: str | None,
    action: str | None,
    message_id: str | None,
    relates_to: list[tuple[str, str]],
    reply_to: addressing.EndpointReference | None,
    fault_to: addressing.EndpointReference | None,
) -> None:
    sent = addressing.AddressingHeaders(
        namespace=space,
        to=to,
        action=action,
        message_id=message_id,
        relates_to=relates_to,
        reply_to=reply_to,
        fault_to=fault_to,
        present=True,
    )
    blocks = addressing.write_headers(sent)
    assume(blocks)
    # Through the wire: serialized in an envelope and parsed back.
    envelope = parse_envelope(serialize(build_envelope(SoapVersion.SOAP12, [], blocks)))
    got = addressing.read_headers(envelope.header_blocks)
    assert (got.namespace, got.to, got.action, got.message_id) == (space, to, action, message_id)
    assert got.relates_to == relates_to
    for mine, theirs in ((reply_to, got.reply_to), (fault_to, got.fault_to)):
        assert (mine is None) == (theirs is None)
        if mine is not None and theirs is not None:
            assert theirs.address == mine.address
            assert [
                etree.tostring(p, method="c14n", exclusive=True)
                for p in theirs.reference_parameters
            ] == [
                etree.tostring(p, method="c14n", exclusive=True) for p in mine.reference_parameters
            ]
    assert not got.repeated and not got.invalid


# -- MTOM ---------------------------------------------------------------------------------------

SMALL_LIMITS = MtomLimits(
    max_parts=6,
    max_header_bytes=512,
    max_headers=8,
    max_root_bytes=8 * 1024,
    max_attachment_bytes=64 * 1024,
    max_total_attachment_bytes=96 * 1024,
    max_body_bytes=128 * 1024,
)
#: Near-delimiters (the writer refuses content holding the delimiter itself).
_tricky = st.sampled_from(
    [b"", b"\r\n", b"\r\n--", b"--" + P.BOUNDARY.encode()[:-1], b"\r\n--" + P.BOUNDARY.encode()[1:]]
)
_attachment_data = st.lists(_tricky | st.binary(max_size=300), max_size=6).map(b"".join)


def _read(body: bytes, content_type: str, fractions: list[float], spool: Path) -> object:
    reader = MtomReader(content_type, spool, SMALL_LIMITS)
    try:
        for piece in chunks(body, fractions):
            reader.feed(piece)
        return reader.finish()
    except BaseException:
        reader.abort()
        raise


def _spooled(spool: Path) -> list[Path]:
    return sorted(spool.iterdir()) if spool.exists() else []


@FUZZ
@given(
    st.sampled_from(["1.1", "1.2"]),
    st.lists(_attachment_data, max_size=4),
    splits,
)
def test_mtom_round_trips_however_split(
    version: str, datas: list[bytes], fractions: list[float]
) -> None:
    envelope = P.soap(version, P.echo())
    attachments = [
        OutgoingAttachment(f"part{i}@fuzz", "application/octet-stream", data)
        for i, data in enumerate(datas)
    ]
    try:
        writer = MtomWriter(envelope, attachments, version, action="urn:fuzz", boundary=P.BOUNDARY)
    except ValueError:  # the parts happen to hold the delimiter: a writer's refusal, not ours
        assume(False)
        raise
    body = b"".join(writer.iter_chunks(chunk_size=97))
    assert len(body) == writer.content_length
    with tempfile.TemporaryDirectory() as tmp:
        spool = Path(tmp) / "spool"
        message = _read(body, writer.content_type, fractions, spool)
        try:
            assert message.root == envelope  # type: ignore[attr-defined]
            assert message.soap_version == version  # type: ignore[attr-defined]
            got = message.attachments  # type: ignore[attr-defined]
            assert list(got) == [a.content_id for a in attachments]
            for sent in attachments:
                received = got[sent.content_id]
                assert received.path.read_bytes() == sent.source
                assert received.sha256 == hashlib.sha256(sent.source).hexdigest()  # type: ignore[arg-type]
            assert len(_spooled(spool)) == len(attachments)
        finally:
            message.close()  # type: ignore[attr-defined]
        assert _spooled(spool) == []


def _valid_mtom(version: str, datas: list[bytes]) -> tuple[str, bytes]:
    attachments = [
        OutgoingAttachment(f"p{i}@fuzz", "application/octet-stream", d) for i, d in enumerate(datas)
    ]
    try:
        writer = MtomWriter(P.soap(version, P.echo()), attachments, version, boundary=P.BOUNDARY)
    except ValueError:
        assume(False)
        raise
    return writer.content_type, b"".join(writer.iter_chunks())


@FUZZ
@given(
    st.sampled_from(["1.1", "1.2"]),
    st.lists(_attachment_data, max_size=3),
    st.lists(mutation, min_size=1, max_size=5),
    splits,
)
def test_mutated_mtom_parses_or_refuses_and_leaves_nothing(
    version: str, datas: list[bytes], ops: list[tuple[str, float, bytes]], fractions: list[float]
) -> None:
    content_type, body = _valid_mtom(version, datas)
    body = mutate(body, ops)
    with tempfile.TemporaryDirectory() as tmp:
        spool = Path(tmp) / "spool"
        try:
            message = _read(body, content_type, fractions, spool)
        except (MalformedMessage, PayloadTooLarge):
            assert _spooled(spool) == []
            return
        message.close()  # type: ignore[attr-defined]
        assert _spooled(spool) == []


_type_params = st.lists(
    st.tuples(
        st.sampled_from(["type", "start", "start-info", "boundary", "action", "x", "boundary"]),
        st.text(max_size=30),
    ),
    max_size=5,
)


@FUZZ
@given(
    st.sampled_from(["multipart/related", "multipart/mixed", "text/xml", "", "multipart/"]),
    _type_params,
    st.booleans(),
    any_bytes,
)
def test_any_mtom_content_type_and_body(
    media: str, params: list[tuple[str, str]], quote: bool, body: bytes
) -> None:
    """Whatever the Content-Type says and the body holds: a message or a refusal."""
    content_type = media + "".join(
        f'; {name}="{value}"' if quote else f"; {name}={value}" for name, value in params
    )
    with tempfile.TemporaryDirectory() as tmp:
        spool = Path(tmp) / "spool"
        try:
            message = _read(body, content_type, [0.5], spool)
        except (MalformedMessage, PayloadTooLarge):
            assert _spooled(spool) == []
            return
        message.close()  # type: ignore[attr-defined]
        assert _spooled(spool) == []


@FUZZ
@given(st.text(max_size=120))
def test_content_types_parse_or_refuse(value: str) -> None:
    try:
        parsed = parse_content_type(value)
    except MalformedMessage:
        return
    assert "/" in parsed.media_type
