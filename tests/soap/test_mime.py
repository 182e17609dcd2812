"""MIME header codec: Content-Type values, part header blocks, the MTOM reading of them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynasoar.errors import MalformedMessage, PayloadTooLarge
from dynasoar.soap.mime import (
    format_content_type,
    header_value,
    is_valid_boundary,
    parse_content_type,
    parse_header_block,
    parse_multipart_related,
    soap_version_and_action,
    unbracket,
)


@pytest.mark.parametrize(
    ("value", "media_type", "params"),
    [
        (
            'multipart/related; type="application/xop+xml"; start="<root@x>"; '
            'start-info="text/xml"; boundary=uuid:1234',
            "multipart/related",
            {
                "type": "application/xop+xml",
                "start": "<root@x>",
                "start-info": "text/xml",
                "boundary": "uuid:1234",
            },
        ),
        (
            'Multipart/Related;BOUNDARY="MIME_b";Type=application/xop+xml;start=<r@x>',
            "multipart/related",
            {"boundary": "MIME_b", "type": "application/xop+xml", "start": "<r@x>"},
        ),
        (
            'application/xop+xml; charset=UTF-8; type="application/soap+xml; action=\\"urn:a\\""',
            "application/xop+xml",
            {"charset": "UTF-8", "type": 'application/soap+xml; action="urn:a"'},
        ),
        ("text/xml", "text/xml", {}),
        ("text/xml ;  charset = utf-8 ;", "text/xml", {"charset": "utf-8"}),
        ('text/plain; x="a;b=c"; y=""', "text/plain", {"x": "a;b=c", "y": ""}),
    ],
)
def test_parse_content_type(value: str, media_type: str, params: dict[str, str]) -> None:
    parsed = parse_content_type(value)
    assert parsed.media_type == media_type
    assert parsed.params == params


def test_parameter_lookup_is_case_insensitive() -> None:
    assert parse_content_type("a/b; Start-Info=x").get("START-INFO") == "x"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("multipart", "type/subtype"),
        ("", "type/subtype"),
        ("a/b c", "type/subtype"),
        ('a/b; x="unterminated', "unterminated"),
        ("a/b; x=1; X=2", "repeats the parameter 'x'"),
        ('a/b; x="1"junk', "text after a quoted value"),
        ("a/b; novalue", "without a value"),
        ("a/b; bad name=1", "bad parameter name"),
    ],
)
def test_parse_content_type_refuses(value: str, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        parse_content_type(value)


_param_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)


@given(st.dictionaries(st.sampled_from(["a", "b-c", "start", "type"]), _param_values))
def test_format_then_parse_round_trips(params: dict[str, str]) -> None:
    value = format_content_type("multipart/related", params.items())
    assert parse_content_type(value).params == params


def test_format_quotes_only_what_needs_it() -> None:
    value = format_content_type("a/b", [("x", "tok"), ("y", 'a "q" \\ b'), ("z", "<c@d>")])
    assert value == 'a/b; x=tok; y="a \\"q\\" \\\\ b"; z="<c@d>"'


def test_format_refuses_line_breaks() -> None:
    with pytest.raises(ValueError, match="line break"):
        format_content_type("a/b", [("x", "1\r\nInjected: yes")])


def test_header_block_lowercases_names_and_unfolds() -> None:
    block = b"Content-ID: <a@b>\r\nContent-Type: text/plain;\r\n\tcharset=utf-8\r\nX-Empty:"
    headers = parse_header_block(block, max_headers=8, where="part 1")
    assert headers == [
        ("content-id", "<a@b>"),
        ("content-type", "text/plain; charset=utf-8"),
        ("x-empty", ""),
    ]


def test_header_block_refuses_a_line_without_colon() -> None:
    with pytest.raises(MalformedMessage, match="part 3 has a header line"):
        parse_header_block(b"Content-ID <a@b>", max_headers=8, where="part 3")


def test_header_block_counts_headers() -> None:
    block = b"\r\n".join(b"X-%d: 1" % i for i in range(5))
    assert len(parse_header_block(block, max_headers=5, where="p")) == 5
    with pytest.raises(PayloadTooLarge, match="more than 4 headers"):
        parse_header_block(block, max_headers=4, where="p")


def test_header_value_refuses_repeats() -> None:
    headers = [("content-id", "<a>"), ("content-id", "<b>")]
    with pytest.raises(MalformedMessage, match="repeats the header content-id"):
        header_value(headers, "content-id", where="p")
    assert header_value(headers, "content-type", where="p") is None


@pytest.mark.parametrize(
    ("boundary", "valid"),
    [
        ("uuid:6b62cda8-6c5c-4b1c-8a40-2a2d0c9e4f1a", True),
        ("uuid:0ca0e16e-feb1-426c-97d8-c4508ada5e82+id=1", True),
        ("MIMEBoundary_" + "a" * 57, True),  # 70 characters: the RFC 2046 maximum
        ("MIMEBoundary_" + "a" * 58, False),
        ("with space inside", True),
        ("ends with space ", False),
        ("", False),
        ('quote"', False),
        ("line\r\nbreak", False),
    ],
)
def test_is_valid_boundary(boundary: str, valid: bool) -> None:
    assert is_valid_boundary(boundary) is valid


@pytest.mark.parametrize(
    ("raw", "content_id"), [("<a@b>", "a@b"), (" < a@b > ", "a@b"), ("a@b", "a@b"), ("<>", "")]
)
def test_unbracket(raw: str, content_id: str) -> None:
    assert unbracket(raw) == content_id


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("text/xml; charset=utf-8", "expected an MTOM message"),
        ("multipart/mixed; boundary=x", "expected an MTOM message"),
        ('multipart/related; type="application/xop+xml"', "no boundary"),
        ('multipart/related; type="image/png"; boundary=x', "not an MTOM message"),
        ('multipart/related; boundary="' + "x" * 71 + '"', "not valid"),
    ],
)
def test_parse_multipart_related_refuses(value: str, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        parse_multipart_related(value)


_TOP = 'multipart/related; type="application/xop+xml"; boundary=b'


@pytest.mark.parametrize(
    ("top", "root", "version", "action"),
    [
        (_TOP, 'application/xop+xml; type="text/xml"', "1.1", None),
        (
            _TOP,
            'application/xop+xml; type="application/soap+xml; action=\\"urn:a\\""',
            "1.2",
            "urn:a",
        ),
        (_TOP + '; start-info="application/soap+xml"', "application/xop+xml", "1.2", None),
        (
            _TOP + '; start-info="application/soap+xml; action=\\"urn:s\\""',
            'application/xop+xml; type="application/soap+xml"',
            "1.2",
            "urn:s",
        ),
        # Axis2 puts the action on the multipart/related header itself.
        (
            _TOP + '; start-info="application/soap+xml"; action="urn:axis"',
            'application/xop+xml; charset=UTF-8; type="application/soap+xml"',
            "1.2",
            "urn:axis",
        ),
        (_TOP, 'application/xop+xml; type="application/soap+xml"; action="urn:r"', "1.2", "urn:r"),
        # SOAP with Attachments: the root is the envelope itself, not XOP-wrapped.
        (_TOP, "text/xml; charset=utf-8", "1.1", None),
    ],
)
def test_soap_version_and_action(top: str, root: str, version: str, action: str | None) -> None:
    result = soap_version_and_action(parse_content_type(top), parse_content_type(root))
    assert result == (version, action)


@pytest.mark.parametrize(
    ("root", "reason"),
    [
        ("application/xop+xml; charset=UTF-8", "no type parameter"),
        ('application/xop+xml; type="image/png"', "not a SOAP envelope"),
        ("image/png", "not a SOAP envelope"),
    ],
)
def test_soap_version_and_action_refuses(root: str, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        soap_version_and_action(parse_content_type(_TOP), parse_content_type(root))
