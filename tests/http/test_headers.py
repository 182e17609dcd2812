"""Headers: case-insensitive multi-map semantics and the wire encoding of fields."""

from __future__ import annotations

import httptools
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynasoar.http.headers import HAS_DATE, HAS_HOST, WANTS_CLOSE, Headers, encode_fields


def test_lookup_ignores_case_and_keeps_order() -> None:
    h = Headers(
        [("Content-Type", "text/xml"), ("SOAPAction", '"urn:a"'), ("X-A", "1"), ("x-a", "2")]
    )
    assert h.get("content-type") == "text/xml"
    assert h.get("CONTENT-TYPE") == "text/xml"
    assert h.get("soapaction") == '"urn:a"'
    assert h.get_all("X-A") == ["1", "2"]
    assert h.get("missing") is None
    assert h.get("missing", "d") == "d"
    assert "x-A" in h and "nope" not in h
    assert list(h) == ["Content-Type", "SOAPAction", "X-A", "x-a"]
    assert h.items()[1] == ("SOAPAction", '"urn:a"')
    assert len(h) == 4


def test_add_set_remove() -> None:
    h = Headers({"A": "1", "B": "2"})
    h.add("a", "3")
    assert h.get_all("A") == ["1", "3"]
    h.set("A", "9")  # replaces every A, at the first one's position
    assert h.items() == [("A", "9"), ("B", "2")]
    h.set("C", "4")
    assert h.items()[-1] == ("C", "4")
    h.remove("b")
    h.remove("not-there")
    assert h.items() == [("A", "9"), ("C", "4")]


def test_values_are_latin1_strings() -> None:
    h = Headers.from_raw([(b"X-Name", "caf\u00e9".encode("latin-1"))])
    assert h.get("x-name") == "caf\u00e9"
    h.add("X-Other", "\u00fc")
    assert h.raw[-1] == (b"X-Other", b"\xfc")


def test_from_raw_wraps_without_copying() -> None:
    raw = [(b"Host", b"example")]
    h = Headers.from_raw(raw)
    raw.append((b"X", b"1"))
    assert h.get("x") == "1"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Evil", "a\r\nSet-Cookie: x=1"),
        ("X-Evil", "a\nb"),
        ("X-Evil", "a\x00b"),
        ("Bad Name", "v"),
        ("Bad:Name", "v"),
        ("", "v"),
        ("X-Wide", "\u20ac"),
    ],
)
def test_refuses_fields_that_could_split_a_message(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        Headers([(name, value)])
    with pytest.raises(ValueError):
        encode_fields([(name, value)])


def test_equality_ignores_name_case() -> None:
    assert Headers([("A", "1")]) == Headers([("a", "1")])
    assert Headers([("A", "1")]) != Headers([("A", "2")])


@pytest.mark.parametrize(
    ("fields", "declared", "flags"),
    [
        ([("Content-Type", "text/xml")], None, 0),
        ([("Content-Length", "12"), ("X", "y")], 12, 0),
        ([("Connection", "close")], None, WANTS_CLOSE),
        ([("Connection", "keep-alive"), ("Keep-Alive", "timeout=5")], None, 0),
        ([("Transfer-Encoding", "chunked"), ("TE", "trailers"), ("Upgrade", "h2c")], None, 0),
        ([("Host", "h"), ("Date", "d")], None, HAS_HOST | HAS_DATE),
    ],
)
def test_encode_fields_leaves_framing_to_the_sender(
    fields: list[tuple[str, str]], declared: int | None, flags: int
) -> None:
    encoded, got_declared, got_flags = encode_fields(fields)
    assert got_declared == declared
    assert got_flags == flags
    owned = {"content-length", "connection", "keep-alive", "transfer-encoding", "te", "upgrade"}
    expected = b"".join(
        b"%s: %s\r\n" % (n.encode(), v.encode()) for n, v in fields if n.lower() not in owned
    )
    assert encoded == expected


_token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!#$%&'*+.^`|~",
    min_size=1,
    max_size=20,
)
_value = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40,
).map(str.strip)


@given(st.lists(st.tuples(_token, _value), max_size=15))
def test_encoded_fields_parse_back_identically(fields: list[tuple[str, str]]) -> None:
    """What encode_fields writes, a real HTTP parser (llhttp) reads back field for field."""
    owned = {
        "content-length",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
    }
    kept = [(n, v) for n, v in fields if n.lower() not in owned]
    encoded, _, _ = encode_fields(Headers(fields))

    class Collect:
        def __init__(self) -> None:
            self.fields: list[tuple[str, str]] = []

        def on_header(self, name: bytes, value: bytes) -> None:
            self.fields.append((name.decode("latin-1"), value.decode("latin-1")))

    sink = Collect()
    parser = httptools.HttpResponseParser(sink)
    parser.feed_data(b"HTTP/1.1 200 OK\r\n" + encoded + b"Content-Length: 0\r\n\r\n")
    assert sink.fields[:-1] == kept
