"""SOAP envelopes: version detection, hardened whole-document parsing, the incremental head
parser the relay feeds chunk by chunk, and building envelopes."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from dynasoar import ns
from dynasoar.errors import MalformedMessage, VersionMismatch
from dynasoar.soap.envelope import (
    Envelope,
    HeadParser,
    SoapVersion,
    build_envelope,
    ensure_header,
    not_understood,
    parse_envelope,
    serialize,
)

S11 = ns.SOAP11_ENV
S12 = ns.SOAP12_ENV


def c14n(el: etree._Element) -> bytes:
    """Exclusive C14N: a header block compares equal wherever it was declared."""
    return bytes(etree.tostring(el, method="c14n", exclusive=True))


def envelope(env_ns: str, header: str = "", body: str = "", prolog: str = "") -> bytes:
    head = f"<s:Header>{header}</s:Header>" if header else ""
    return (
        f'{prolog}<s:Envelope xmlns:s="{env_ns}">{head}<s:Body>{body}</s:Body></s:Envelope>'
    ).encode()


def split(data: bytes, points: Sequence[int]) -> list[bytes]:
    cuts = [0, *sorted(set(points)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(cuts) if b > a]


def head_parse(chunks: Sequence[bytes], max_head_bytes: int | None = None) -> Envelope:
    """Feed ``chunks`` the way the relay does: stop at the first result, close at the end."""
    parser = HeadParser() if max_head_bytes is None else HeadParser(max_head_bytes)
    for chunk in chunks:
        result = parser.feed(chunk)
        if result is not None:
            return result
    return parser.close()


def summary(env: Envelope) -> tuple[SoapVersion, list[bytes], str | None]:
    return env.version, [c14n(b) for b in env.header_blocks], env.body_qname


# -- versions -------------------------------------------------------------------------------


@pytest.mark.parametrize(("uri", "version"), [(S11, SoapVersion.SOAP11), (S12, SoapVersion.SOAP12)])
def test_version_from_envelope_namespace(uri: str, version: SoapVersion) -> None:
    assert SoapVersion.from_namespace(uri) is version
    assert version.envelope_ns == uri
    assert parse_envelope(envelope(uri, body="<x/>")).version is version


@pytest.mark.parametrize(
    "uri", ["", "urn:not-soap", S11.rstrip("/"), "http://www.w3.org/2003/05/soap-envelope/"]
)
def test_unknown_envelope_namespace_is_a_version_mismatch(uri: str) -> None:
    with pytest.raises(VersionMismatch):
        SoapVersion.from_namespace(uri)


@pytest.mark.parametrize(
    ("media_type", "version"),
    [
        ("text/xml", SoapVersion.SOAP11),
        (" Text/XML ", SoapVersion.SOAP11),
        ("application/soap+xml", SoapVersion.SOAP12),
        ("APPLICATION/SOAP+XML", SoapVersion.SOAP12),
        ("application/xml", None),
        ("multipart/related", None),
        ("", None),
    ],
)
def test_version_from_media_type(media_type: str, version: SoapVersion | None) -> None:
    assert SoapVersion.from_media_type(media_type) is version


def test_content_type_carries_the_action_only_for_soap12() -> None:
    assert SoapVersion.SOAP11.content_type("urn:a") == "text/xml; charset=utf-8"
    assert SoapVersion.SOAP12.content_type() == "application/soap+xml; charset=utf-8"
    assert (
        SoapVersion.SOAP12.content_type("urn:a")
        == 'application/soap+xml; charset=utf-8; action="urn:a"'
    )


# -- parse_envelope -------------------------------------------------------------------------

WSA_HEADER = (
    f'<wsa:To xmlns:wsa="{ns.WSA}">http://sp/services/Echo</wsa:To>'
    f'<wsa:Action xmlns:wsa="{ns.WSA}">urn:a</wsa:Action>'
)


@pytest.mark.parametrize("uri", [S11, S12])
def test_parse_envelope_finds_header_blocks_and_body(uri: str) -> None:
    data = envelope(
        uri,
        header=f"<!-- note -->{WSA_HEADER}  ",
        body='\n  <m:Echo xmlns:m="urn:echo"><text>hi</text></m:Echo>\n',
        prolog='<?xml version="1.0" encoding="UTF-8"?>\n',
    )
    env = parse_envelope(data)
    assert [b.tag for b in env.header_blocks] == [f"{{{ns.WSA}}}To", f"{{{ns.WSA}}}Action"]
    assert env.body_qname == "{urn:echo}Echo"
    assert env.body is not None and env.body.tag == f"{{{uri}}}Body"
    assert env.root.tag == f"{{{uri}}}Envelope"


def test_parse_envelope_without_header_and_with_empty_body() -> None:
    env = parse_envelope(envelope(S12))
    assert env.header_blocks == []
    assert env.body_qname is None


NOT_XML = [b"", b"hello", b"<s:Envelope", b"\x00\x01\x02", b"<a></b>"]


@pytest.mark.parametrize("data", NOT_XML)
def test_not_xml_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse_envelope(data)


BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE s:Envelope [\n <!ENTITY l0 "lol">\n'
    + b"".join(
        b' <!ENTITY l%d "%s">\n' % (i, b"".join(b"&l%d;" % (i - 1) for _ in range(10)))
        for i in range(1, 10)
    )
    + b"]>\n"
    + envelope(S11, body="<x>&l9;</x>")
)
INTERNAL_ENTITY = b'<!DOCTYPE e [<!ENTITY s "SECRET-EXPANDED">]>' + envelope(S11, body="<x>&s;</x>")
DTD_ONLY = b"<!DOCTYPE s:Envelope [<!ELEMENT s:Envelope ANY>]>" + envelope(S12, body="<x/>")
EXTERNAL_DTD = b'<!DOCTYPE s:Envelope SYSTEM "http://example.invalid/soap.dtd">' + envelope(
    S11, body="<x/>"
)


def external_entity(path: str) -> bytes:
    return f'<!DOCTYPE e [<!ENTITY s SYSTEM "file://{path}">]>'.encode() + envelope(
        S11, header="<h:H xmlns:h='urn:h'>&s;</h:H>", body="<x>&s;</x>"
    )


@pytest.mark.parametrize(
    "data",
    [BILLION_LAUGHS, INTERNAL_ENTITY, DTD_ONLY, EXTERNAL_DTD],
    ids=["billion-laughs", "internal-entity", "dtd-without-entities", "external-dtd"],
)
def test_a_dtd_is_refused_and_no_entity_expanded(data: bytes) -> None:
    with pytest.raises(MalformedMessage) as info:
        parse_envelope(data)
    assert b"SECRET-EXPANDED" not in str(info.value).encode()
    assert "lollol" not in str(info.value)


def test_external_entity_is_refused_without_reading_the_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    with pytest.raises(MalformedMessage) as info:
        parse_envelope(external_entity(str(secret)))
    assert "TOP-SECRET-CONTENT" not in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        b"<Envelope><Body/></Envelope>",  # no namespace at all
        b'<e:Envelope xmlns:e="urn:other"><e:Body/></e:Envelope>',
        b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope/"><e:Body/></e:Envelope>',
    ],
)
def test_unknown_envelope_namespace_raises_version_mismatch(data: bytes) -> None:
    with pytest.raises(VersionMismatch):
        parse_envelope(data)


@pytest.mark.parametrize(
    "data",
    [
        f'<s:Body xmlns:s="{S11}"/>'.encode(),
        f'<s:Fault xmlns:s="{S12}"/>'.encode(),
        b'<definitions xmlns="http://schemas.xmlsoap.org/wsdl/"/>',
        b"<html><body/></html>",
    ],
)
def test_wrong_document_element_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse_envelope(data)


STRUCTURE_ERRORS = {
    # Seen before the Body starts, so the head parser refuses them too.
    "no-body": ("<s:Header/>", True),
    "empty": ("", True),
    "two-headers": ("<s:Header/><s:Header/><s:Body/>", True),
    "stranger-before-body": ("<x:Before xmlns:x='urn:x'/><s:Body/>", True),
    # After the Body: only a whole parse sees them (the relay never reads past the Body).
    "after-body": ("<s:Body/><x:Trailer xmlns:x='urn:x'/>", False),  # WS-I BP R1011
    "header-after-body": ("<s:Body/><s:Header/>", False),
    "two-bodies": ("<s:Body/><s:Body/>", False),
}


@pytest.mark.parametrize("uri", [S11, S12])
@pytest.mark.parametrize("case", STRUCTURE_ERRORS)
def test_envelope_structure_is_enforced(uri: str, case: str) -> None:
    children, seen_by_head_parser = STRUCTURE_ERRORS[case]
    data = f'<s:Envelope xmlns:s="{uri}">{children}</s:Envelope>'.encode()
    with pytest.raises(MalformedMessage):
        parse_envelope(data)
    if seen_by_head_parser:
        with pytest.raises(MalformedMessage):
            head_parse([data])


def test_soap11_body_in_a_soap12_envelope_is_not_a_body() -> None:
    data = f'<s:Envelope xmlns:s="{S12}"><b:Body xmlns:b="{S11}"/></s:Envelope>'.encode()
    with pytest.raises(MalformedMessage):
        parse_envelope(data)


# -- HeadParser ------------------------------------------------------------------------------

SAMPLES = [
    envelope(
        S11,
        prolog='<?xml version="1.0" encoding="utf-8"?>\n',
        header=(
            f"\n  {WSA_HEADER}\n  <!-- a comment -->\n"
            f'  <wsa:MessageID xmlns:wsa="{ns.WSA}">urn:uuid:1</wsa:MessageID>\n'
            '  <d:PreferredHosts xmlns:d="urn:dynasoar:2006"><d:Host>http://h1</d:Host>'
            "<d:Host>http://h2</d:Host></d:PreferredHosts>\n"
            '  <x:Note xmlns:x="urn:x" x:lang="de">Grüße, € &amp; 日本 <![CDATA[<raw>]]></x:Note>\n'
        ),
        body='\n  <m:Echo xmlns:m="urn:echo"><text>' + "body " * 200 + "</text></m:Echo>\n",
    ),
    envelope(S12, body=""),
    envelope(S12, header=WSA_HEADER, body="   "),
    envelope(S12, body='<Echo xmlns="urn:default"/>'),
    (
        '<?xml version="1.0" encoding="ISO-8859-1"?>'
        f'<s:Envelope xmlns:s="{S11}"><s:Header><x:N xmlns:x="urn:x">Café</x:N></s:Header>'
        '<s:Body><m:Ping xmlns:m="urn:m"/></s:Body></s:Envelope>'
    ).encode("iso-8859-1"),
]


@pytest.mark.parametrize("data", SAMPLES)
def test_head_parser_agrees_with_the_whole_parse(data: bytes) -> None:
    assert summary(head_parse([data])) == summary(parse_envelope(data))


@pytest.mark.parametrize("data", SAMPLES)
def test_head_parser_byte_by_byte(data: bytes) -> None:
    assert summary(head_parse([bytes([b]) for b in data])) == summary(parse_envelope(data))


@given(
    st.sampled_from(SAMPLES).flatmap(
        lambda data: st.tuples(st.just(data), st.lists(st.integers(0, len(data)), max_size=25))
    )
)
def test_head_parser_result_does_not_depend_on_chunking(case: tuple[bytes, list[int]]) -> None:
    data, points = case
    assert summary(head_parse(split(data, points))) == summary(parse_envelope(data))


def test_head_parser_stops_at_the_bodys_first_child() -> None:
    # The rest of the stream is never needed: it may be megabytes, or not even XML yet.
    head = f'<s:Envelope xmlns:s="{S12}"><s:Header>{WSA_HEADER}</s:Header><s:Body>'.encode()
    parser = HeadParser()
    assert parser.feed(head) is None
    env = parser.feed(b'<m:Upload xmlns:m="urn:m"><data>')
    assert env is not None
    assert env.body_qname == "{urn:m}Upload"
    assert len(env.header_blocks) == 2
    # Later chunks (here: garbage) are not parsed; the head stays as it was.
    assert parser.feed(b"\x00 not xml </oops>") is env
    assert parser.close() is env


def test_head_parser_finishes_on_an_empty_body_without_the_envelope_end() -> None:
    parser = HeadParser()
    env = parser.feed(f'<s:Envelope xmlns:s="{S11}"><s:Body></s:Body>'.encode())
    assert env is not None
    assert env.body_qname is None and env.header_blocks == []


@pytest.mark.parametrize(
    "data",
    [BILLION_LAUGHS, INTERNAL_ENTITY, DTD_ONLY, EXTERNAL_DTD],
    ids=["billion-laughs", "internal-entity", "dtd-without-entities", "external-dtd"],
)
@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_head_parser_refuses_a_dtd(data: bytes, chunk: int) -> None:
    with pytest.raises(MalformedMessage) as info:
        head_parse([data[i : i + chunk] for i in range(0, len(data), chunk)])
    assert "SECRET-EXPANDED" not in str(info.value)


@pytest.mark.parametrize("data", NOT_XML)
def test_head_parser_not_xml_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        head_parse([data])


def test_head_parser_unknown_namespace_is_a_version_mismatch() -> None:
    with pytest.raises(VersionMismatch):
        head_parse([b'<e:Envelope xmlns:e="urn:other"><e:Body><x/></e:Body></e:Envelope>'])


def test_head_parser_wrong_root_is_malformed() -> None:
    with pytest.raises(MalformedMessage):
        head_parse([b"<html><body><p/></body></html>"])


def test_head_parser_enforces_max_head_bytes() -> None:
    big_header = f'<x:Pad xmlns:x="urn:x">{"p" * 5000}</x:Pad>'
    data = envelope(S11, header=big_header, body="<x/>")
    chunks = [data[i : i + 100] for i in range(0, len(data), 100)]
    with pytest.raises(MalformedMessage, match="1000 bytes"):
        head_parse(chunks, max_head_bytes=1000)


def test_head_parser_limit_counts_only_the_head() -> None:
    # A small head followed by a large body is fine: the parser stops at the body.
    data = envelope(S11, header=WSA_HEADER, body=f"<m:Big xmlns:m='urn:m'>{'b' * 50_000}</m:Big>")
    chunks = [data[i : i + 100] for i in range(0, len(data), 100)]
    env = head_parse(chunks, max_head_bytes=1000)
    assert env.body_qname == "{urn:m}Big"


def test_head_over_the_limit_is_refused_even_in_one_chunk() -> None:
    big_header = f'<x:Pad xmlns:x="urn:x">{"p" * 5000}</x:Pad>'
    data = envelope(S11, header=big_header, body="<x/>")
    with pytest.raises(MalformedMessage):
        head_parse([data], max_head_bytes=1000)


@pytest.mark.parametrize(
    "fed",
    [
        b"",
        f'<s:Envelope xmlns:s="{S11}"><s:Header>'.encode(),
        f'<s:Envelope xmlns:s="{S11}"><s:Header>{WSA_HEADER}</s:Header>'.encode(),
        f'<s:Envelope xmlns:s="{S12}"><s:Header/></s:Envelope>'.encode(),
    ],
    ids=["nothing", "mid-header", "after-header", "complete-without-body"],
)
def test_close_before_the_body_is_malformed(fed: bytes) -> None:
    parser = HeadParser()
    assert parser.feed(fed) is None
    with pytest.raises(MalformedMessage):
        parser.close()


# -- building -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", list(SoapVersion))
def test_built_envelope_parses_back(version: SoapVersion) -> None:
    block = etree.fromstring(f'<wsa:Action xmlns:wsa="{ns.WSA}">urn:a</wsa:Action>')
    child = etree.fromstring('<m:Echo xmlns:m="urn:echo"><text>é &lt;&amp;&gt;</text></m:Echo>')
    expected_block, expected_child = c14n(block), c14n(child)
    data = serialize(build_envelope(version, [child], [block]))
    assert data.startswith(b"<?xml")
    env = parse_envelope(data)
    assert env.version is version
    assert [c14n(b) for b in env.header_blocks] == [expected_block]
    assert env.body is not None and [c14n(c) for c in env.body] == [expected_child]


@pytest.mark.parametrize("version", list(SoapVersion))
def test_ensure_header_creates_one_header_before_the_body(version: SoapVersion) -> None:
    root = build_envelope(version, [etree.Element("{urn:m}Op")])
    header = ensure_header(root, version)
    assert ensure_header(root, version) is header
    header.append(etree.Element("{urn:h}H"))
    env = parse_envelope(serialize(root))
    assert [b.tag for b in env.header_blocks] == ["{urn:h}H"]
    assert env.body_qname == "{urn:m}Op"


def test_a_namespace_uri_with_a_closing_brace_is_read_not_crashed_on() -> None:
    # lxml's QName refuses such a tag ("{}}A"); the sender may still write it. A clear
    # fault, whichever parser sees it first (the whole one refuses the URI itself).
    with pytest.raises(MalformedMessage):
        parse_envelope(b'<s:A xmlns:s="}" A=""/>')
    head = HeadParser()
    with pytest.raises(MalformedMessage, match="not a SOAP Envelope"):
        head.feed(b'<s:A xmlns:s="}" A=""><s:B/></s:A>')
    relayed = HeadParser()
    relayed.feed(
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header>'
        b'<x:h xmlns:x="urn:a}b" s:mustUnderstand="1"/></s:Header><s:Body><b/></s:Body>'
    )
    assert relayed.result is not None
    assert not_understood(relayed.result, []) == [("urn:a}b", "h")]
