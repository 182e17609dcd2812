"""WS-Addressing codec: header blocks ⇄ AddressingHeaders, for WS-A 1.0 and the 2004/08
member submission; the properties of a reply."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from dynasoar import ns
from dynasoar.soap.addressing import (
    REPLY_RELATIONSHIP,
    AddressingHeaders,
    EndpointReference,
    read_headers,
    reference_parameter_blocks,
    reply_headers,
    write_headers,
)

BOTH = pytest.mark.parametrize("wsa", [ns.WSA, ns.WSA_2004], ids=["wsa10", "wsa2004"])


def c14n(el: etree._Element) -> bytes:
    """Exclusive C14N: a block compares equal wherever it was declared."""
    return bytes(etree.tostring(el, method="c14n", exclusive=True))


def blocks(xml: str, wsa: str = ns.WSA) -> list[etree._Element]:
    """Header blocks from a fragment where the prefix ``wsa`` means ``wsa``."""
    header = etree.fromstring(
        f'<Header xmlns:wsa="{wsa}" xmlns:wsa04="{ns.WSA_2004}" xmlns:p="urn:p">{xml}</Header>'
    )
    return list(header)


FULL = """
  <wsa:To> http://sp/services/Echo </wsa:To>
  <wsa:Action>urn:dynasoar:samples:echo/Echo</wsa:Action>
  <wsa:MessageID>urn:uuid:0001</wsa:MessageID>
  <wsa:RelatesTo>urn:uuid:0000</wsa:RelatesTo>
  <wsa:RelatesTo RelationshipType="urn:custom:kind">urn:uuid:ffff</wsa:RelatesTo>
  <wsa:From><wsa:Address>http://client/me</wsa:Address></wsa:From>
  <wsa:ReplyTo>
    <wsa:Address>http://client/replies</wsa:Address>
    <wsa:ReferenceParameters><p:Session>42</p:Session><p:Shard>7</p:Shard></wsa:ReferenceParameters>
  </wsa:ReplyTo>
  <wsa:FaultTo><wsa:Address>http://client/faults</wsa:Address></wsa:FaultTo>
  <p:Other>not addressing</p:Other>
"""


@BOTH
def test_read_all_properties(wsa: str) -> None:
    h = read_headers(blocks(FULL, wsa))
    assert h.present and h.namespace == wsa
    assert h.to == "http://sp/services/Echo"
    assert h.action == "urn:dynasoar:samples:echo/Echo"
    assert h.message_id == "urn:uuid:0001"
    assert h.relates_to == [
        ("urn:uuid:0000", REPLY_RELATIONSHIP),
        ("urn:uuid:ffff", "urn:custom:kind"),
    ]
    assert h.from_ == EndpointReference("http://client/me")
    assert h.fault_to == EndpointReference("http://client/faults")
    assert h.reply_to is not None and h.reply_to.address == "http://client/replies"
    assert [c14n(p) for p in h.reply_to.reference_parameters] == [
        b'<p:Session xmlns:p="urn:p">42</p:Session>',
        b'<p:Shard xmlns:p="urn:p">7</p:Shard>',
    ]
    assert h.repeated == [] and h.invalid == []


def test_namespace_specific_well_known_values() -> None:
    h10 = read_headers(blocks("<wsa:Action>urn:a</wsa:Action>", ns.WSA))
    h04 = read_headers(blocks("<wsa:Action>urn:a</wsa:Action>", ns.WSA_2004))
    assert h10.anonymous == "http://www.w3.org/2005/08/addressing/anonymous"
    assert h04.anonymous == "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
    assert h10.fault_action == "http://www.w3.org/2005/08/addressing/fault"
    assert h04.fault_action == "http://schemas.xmlsoap.org/ws/2004/08/addressing/fault"


def test_no_addressing_headers() -> None:
    h = read_headers(blocks("<p:Other>x</p:Other>"))
    assert not h.present
    assert (h.to, h.action, h.message_id, h.reply_to) == (None, None, None, None)
    assert read_headers([]) == h


def test_both_namespaces_present_wsa10_wins() -> None:
    h = read_headers(
        blocks(
            "<wsa04:Action>urn:old</wsa04:Action>"
            "<wsa04:MessageID>urn:uuid:old</wsa04:MessageID>"
            "<wsa04:To>http://old</wsa04:To>"
            "<wsa:Action>urn:new</wsa:Action>"
            "<wsa:MessageID>urn:uuid:new</wsa:MessageID>"
        )
    )
    assert h.namespace == ns.WSA
    assert (h.action, h.message_id, h.to) == ("urn:new", "urn:uuid:new", None)
    # The ignored namespace cannot make a 1.0 header look repeated.
    assert h.repeated == []


@BOTH
@pytest.mark.parametrize("name", ["To", "Action", "MessageID", "From", "ReplyTo", "FaultTo"])
def test_repeated_single_headers_are_recorded(wsa: str, name: str) -> None:
    if name in ("From", "ReplyTo", "FaultTo"):
        one = f"<wsa:{name}><wsa:Address>http://a/{{}}</wsa:Address></wsa:{name}>"
    else:
        one = f"<wsa:{name}>urn:{{}}</wsa:{name}>"
    h = read_headers(blocks(one.format(1) + one.format(2), wsa))
    assert h.repeated == [(wsa, name)]


def test_several_relates_to_are_not_repeated() -> None:
    two = "<wsa:RelatesTo>urn:1</wsa:RelatesTo><wsa:RelatesTo>urn:2</wsa:RelatesTo>"
    h = read_headers(blocks(two))
    assert h.repeated == []
    assert [rel for rel, _ in h.relates_to] == ["urn:1", "urn:2"]


@BOTH
@pytest.mark.parametrize(
    ("xml", "name"),
    [
        ("<wsa:ReplyTo/>", "ReplyTo"),
        ("<wsa:ReplyTo><wsa:Address>  </wsa:Address></wsa:ReplyTo>", "ReplyTo"),
        ("<wsa:FaultTo><wsa:ReferenceParameters/></wsa:FaultTo>", "FaultTo"),
        ("<wsa:From><p:Address>http://x</p:Address></wsa:From>", "From"),  # wrong namespace
        ("<wsa:Action></wsa:Action>", "Action"),
        ("<wsa:Action>  </wsa:Action>", "Action"),
        ("<wsa:MessageID/>", "MessageID"),
    ],
)
def test_unusable_properties_are_invalid(wsa: str, xml: str, name: str) -> None:
    h = read_headers(blocks(xml, wsa))
    assert h.present
    assert h.invalid == [(wsa, name)]


def test_relates_to_relationship_defaults_to_reply() -> None:
    h = read_headers(blocks("<wsa:RelatesTo>urn:uuid:1</wsa:RelatesTo>"))
    assert h.relates_to == [("urn:uuid:1", "http://www.w3.org/2005/08/addressing/reply")]


# -- writing ---------------------------------------------------------------------------------


def test_write_headers_produces_the_expected_blocks() -> None:
    param = etree.fromstring('<p:Session xmlns:p="urn:p">42</p:Session>')
    h = AddressingHeaders(
        to="http://sp/services/Echo",
        action="urn:a",
        message_id="urn:uuid:1",
        relates_to=[("urn:uuid:0", REPLY_RELATIONSHIP), ("urn:uuid:9", "urn:kind")],
        reply_to=EndpointReference("http://client/r", (param,)),
    )
    w = f'xmlns:wsa="{ns.WSA}"'
    expected = [
        f"<wsa:To {w}>http://sp/services/Echo</wsa:To>",
        f"<wsa:Action {w}>urn:a</wsa:Action>",
        f"<wsa:MessageID {w}>urn:uuid:1</wsa:MessageID>",
        f"<wsa:RelatesTo {w}>urn:uuid:0</wsa:RelatesTo>",
        f'<wsa:RelatesTo {w} RelationshipType="urn:kind">urn:uuid:9</wsa:RelatesTo>',
        f"<wsa:ReplyTo {w}><wsa:Address>http://client/r</wsa:Address><wsa:ReferenceParameters>"
        '<p:Session xmlns:p="urn:p">42</p:Session></wsa:ReferenceParameters></wsa:ReplyTo>',
    ]
    written = sorted(c14n(b) for b in write_headers(h))
    assert written == sorted(c14n(etree.fromstring(x)) for x in expected)


def test_write_headers_leaves_the_eprs_parameters_alone() -> None:
    # The EPR may be reused for the next message: writing must copy, not move, its parameters.
    param = etree.fromstring('<p:Session xmlns:p="urn:p">42</p:Session>')
    epr = EndpointReference("http://client/r", (param,))
    write_headers(AddressingHeaders(action="urn:a", reply_to=epr))
    write_headers(AddressingHeaders(action="urn:b", reply_to=epr))
    assert param.getparent() is None
    assert c14n(param) == b'<p:Session xmlns:p="urn:p">42</p:Session>'


def test_write_nothing_when_nothing_is_set() -> None:
    assert write_headers(AddressingHeaders()) == []


_iri = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Cn", "Zl", "Zp", "Zs"), blacklist_characters="\x85"
    ),
    min_size=1,
    max_size=40,
)
_epr = st.builds(
    EndpointReference,
    _iri,
    st.lists(st.integers(0, 999), max_size=2).map(
        lambda values: tuple(
            etree.fromstring(f'<p:Key xmlns:p="urn:p" n="{i}">{v}</p:Key>')
            for i, v in enumerate(values)
        )
    ),
)
_relationship = st.one_of(st.just(REPLY_RELATIONSHIP), _iri)


@given(
    wsa=st.sampled_from([ns.WSA, ns.WSA_2004]),
    to=st.none() | _iri,
    action=_iri,
    message_id=st.none() | _iri,
    relates_to=st.lists(st.tuples(_iri, _relationship), max_size=3),
    reply_to=st.none() | _epr,
    fault_to=st.none() | _epr,
    from_=st.none() | _epr,
)
def test_write_then_read_round_trip(
    wsa: str,
    to: str | None,
    action: str,
    message_id: str | None,
    relates_to: list[tuple[str, str]],
    reply_to: EndpointReference | None,
    fault_to: EndpointReference | None,
    from_: EndpointReference | None,
) -> None:
    sent = AddressingHeaders(
        namespace=wsa,
        to=to,
        action=action,
        message_id=message_id,
        relates_to=relates_to,
        reply_to=reply_to,
        fault_to=fault_to,
        from_=from_,
    )
    # Through bytes, as on the wire.
    header = etree.Element("Header")
    header.extend(write_headers(sent))
    got = read_headers(etree.fromstring(etree.tostring(header)))

    assert got.present and got.namespace == wsa
    assert (got.to, got.action, got.message_id) == (to, action, message_id)
    assert got.relates_to == relates_to
    for mine, theirs in ((reply_to, got.reply_to), (fault_to, got.fault_to), (from_, got.from_)):
        assert (mine is None) == (theirs is None)
        if mine is not None and theirs is not None:
            assert theirs.address == mine.address
            assert [c14n(p) for p in theirs.reference_parameters] == [
                c14n(p) for p in mine.reference_parameters
            ]
    assert got.repeated == [] and got.invalid == []


# -- replies ---------------------------------------------------------------------------------


@BOTH
def test_reply_headers_relate_to_the_request(wsa: str) -> None:
    request = read_headers(blocks(FULL, wsa))
    reply = reply_headers(request, "urn:dynasoar:samples:echo/EchoResponse")
    assert reply.namespace == wsa
    assert reply.action == "urn:dynasoar:samples:echo/EchoResponse"
    assert reply.relates_to == [("urn:uuid:0001", REPLY_RELATIONSHIP)]
    assert reply.message_id is not None and reply.message_id.startswith("urn:uuid:")
    assert reply.message_id != request.message_id
    # Written, every block is in the request's namespace.
    written = write_headers(reply)
    assert {etree.QName(b).namespace for b in written} == {wsa}
    relates = [b for b in written if etree.QName(b).localname == "RelatesTo"]
    assert [r.text for r in relates] == ["urn:uuid:0001"]


def test_each_reply_has_its_own_message_id() -> None:
    request = read_headers(blocks("<wsa:Action>urn:a</wsa:Action><wsa:MessageID>m</wsa:MessageID>"))
    ids = {reply_headers(request, "urn:r").message_id for _ in range(100)}
    assert len(ids) == 100


def test_reply_to_a_request_without_message_id_relates_to_nothing() -> None:
    request = read_headers(blocks("<wsa:Action>urn:a</wsa:Action>"))
    assert reply_headers(request, "urn:r").relates_to == []


def test_reference_parameters_become_marked_header_blocks() -> None:
    wsa = ns.WSA
    epr = read_headers(blocks(FULL, wsa)).reply_to
    assert epr is not None
    out = reference_parameter_blocks(epr, wsa)
    assert [etree.QName(b).localname for b in out] == ["Session", "Shard"]
    assert all(b.get(f"{{{wsa}}}IsReferenceParameter") == "true" for b in out)
    assert [b.text for b in out] == ["42", "7"]
    # The EPR itself is not changed.
    assert all(p.get(f"{{{wsa}}}IsReferenceParameter") is None for p in epr.reference_parameters)


def test_2004_reference_properties_and_parameters_become_unmarked_header_blocks() -> None:
    """The 2004/08 submission (its §2.3): each reference property and parameter is a header
    block of a message to the EPR; it has no IsReferenceParameter attribute."""
    epr = read_headers(
        blocks(
            "<wsa:Action>urn:a</wsa:Action><wsa:ReplyTo><wsa:Address>http://c/r</wsa:Address>"
            "<wsa:ReferenceProperties><p:Tenant>t1</p:Tenant></wsa:ReferenceProperties>"
            "<wsa:ReferenceParameters><p:Session>42</p:Session></wsa:ReferenceParameters>"
            "</wsa:ReplyTo>",
            ns.WSA_2004,
        )
    ).reply_to
    assert epr is not None
    out = reference_parameter_blocks(epr, ns.WSA_2004)
    assert [(etree.QName(b).localname, b.text) for b in out] == [
        ("Tenant", "t1"),
        ("Session", "42"),
    ]
    assert all(not b.attrib for b in out)
