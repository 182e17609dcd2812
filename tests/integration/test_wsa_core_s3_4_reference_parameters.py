"""WS-Addressing 1.0 Core §3.4 (formulating a reply) with SOAP Binding §3 (binding the
reference parameters), on the wire, SOAP 1.1 and 1.2: a reply carries each reference
parameter of the endpoint it is sent to as a header block marked
``wsa:IsReferenceParameter="true"``, its attributes, children and in-scope namespaces kept; a
fault carries the FaultTo's (absent a FaultTo, the ReplyTo's). Through the SP to a deployed
code service (whose container adds them: the SP adds none twice), for faults the SP raises
itself, and at both management ports; in the 2004/08 submission the reference properties come
too, unmarked. (The VM guest, which writes its own reply headers and no reference parameters,
is in test_wsa_binding_s5_2_async_replies.py.) After the W3C test suite's reply scenarios
with a "customer key" reference parameter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lxml import etree

from dynasoar import ns
from dynasoar.paths import samples_dir
from dynasoar.procs import Actor, start_actor

from .conftest import Cluster, wait_for
from .wire import ECHO_ACTION, ECHO_NS, envelope, post, wsa_headers
from .wsa import (
    HP_PORT,
    HP_STATUS,
    HP_STATUS_ACTION,
    KEY_PARAM,
    SP_LIST,
    SP_LIST_ACTION,
    SP_PORT,
    epr,
    fault_to,
    header_text,
    reference_blocks,
    reply_to,
)

VERSIONS = pytest.mark.parametrize("version", ["1.1", "1.2"])
IS_REF = "{%s}IsReferenceParameter" % ns.WSA
OTHER_PARAM = '<o:Session xmlns:o="urn:example:o">s-42</o:Session>'
OTHER = "{urn:example:o}Session"


@pytest.fixture(scope="module")
def actors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Actor, Actor]]:
    work = tmp_path_factory.mktemp("s3_4")
    sp = start_actor("sp", ["--port", "0", "--data", str(work / "sp")], work / "sp.log")
    hp = start_actor(
        "hp", ["--port", "0", "--data", str(work / "hp"), "--sp", sp.url], work / "hp.log"
    )
    try:
        cluster = Cluster(work, sp, [hp])
        wait_for(lambda: hp.url in cluster.hosts_up(), what="the HP to register")
        cluster.client.publish(samples_dir() / "echo")
        yield sp, hp
    finally:
        hp.stop()
        sp.stop()


def check_key(block: etree._Element, marked: bool = True) -> None:
    """The CustomerKey as sent: attributes, children, and the namespace its QName content
    uses (declared on the EPR, not on the parameter)."""
    assert block.get(IS_REF) == ("true" if marked else None)
    assert block.get("{urn:example:p}kind") == "gold" and block.get("flag") == "1"
    assert [c.tag for c in block] == ["{urn:example:p}Id", "{urn:example:p}Type"]
    assert block[0].text == "123456789"
    prefix, _, local = (block[1].text or "").partition(":")
    assert (block[1].nsmap.get(prefix), local) == ("urn:example:q", "Premium")


def echo(text: str) -> str:
    return f'<e:Echo xmlns:e="{ECHO_NS}"><e:text>{text}</e:text></e:Echo>'


def compute(millis: str) -> str:
    return f'<e:Compute xmlns:e="{ECHO_NS}"><e:millis>{millis}</e:millis></e:Compute>'


@VERSIONS
def test_a_relayed_reply_carries_the_reply_to_parameters_once(
    actors: tuple[Actor, Actor], version: str
) -> None:
    sp, _ = actors
    url = sp.url + "/services/Echo"
    headers, message_id = wsa_headers(to=url, extra=reply_to(ns.WSA_ANONYMOUS, KEY_PARAM))
    reply = post(url, envelope(echo("key"), headers, version), version, soap_action=ECHO_ACTION)
    assert reply.status == 200, reply.body
    assert reply.text(".//echo:text") == "key"
    assert header_text(reply, "RelatesTo") == message_id
    (block,) = reference_blocks(reply)  # the container wrote it; the SP did not add another
    check_key(block)


@VERSIONS
def test_two_parameters_of_the_same_name_both_come_back(
    actors: tuple[Actor, Actor], version: str
) -> None:
    sp, _ = actors
    url = sp.url + "/services/Echo"
    two = OTHER_PARAM + OTHER_PARAM.replace("s-42", "s-43")
    headers, _ = wsa_headers(to=url, extra=reply_to(ns.WSA_ANONYMOUS, two))
    reply = post(url, envelope(echo("two"), headers, version), version, soap_action=ECHO_ACTION)
    assert [b.text for b in reference_blocks(reply, OTHER)] == ["s-42", "s-43"]


@VERSIONS
def test_a_service_fault_carries_the_fault_to_parameters(
    actors: tuple[Actor, Actor], version: str
) -> None:
    sp, _ = actors
    url = sp.url + "/services/Echo"
    action = ECHO_NS + "/Compute"
    extra = reply_to(ns.WSA_ANONYMOUS, OTHER_PARAM) + fault_to(ns.WSA_ANONYMOUS, KEY_PARAM)
    headers, message_id = wsa_headers(to=url, action=action, extra=extra)
    reply = post(url, envelope(compute("-1"), headers, version), version, soap_action=action)
    assert reply.status in (400, 500) and b"InvalidArgument" in reply.body, reply.body
    assert header_text(reply, "RelatesTo") == message_id
    assert header_text(reply, "Action") == ns.WSA_SOAP_FAULT_ACTION
    (block,) = reference_blocks(reply)
    check_key(block)
    assert reference_blocks(reply, OTHER) == [], "the ReplyTo's are not the fault's"


@VERSIONS
def test_a_fault_without_fault_to_carries_the_reply_to_parameters(
    actors: tuple[Actor, Actor], version: str
) -> None:
    sp, _ = actors
    url = sp.url + "/services/Echo"
    action = ECHO_NS + "/Compute"
    headers, _ = wsa_headers(to=url, action=action, extra=reply_to(ns.WSA_ANONYMOUS, KEY_PARAM))
    reply = post(url, envelope(compute("-1"), headers, version), version, soap_action=action)
    (block,) = reference_blocks(reply)
    check_key(block)


@VERSIONS
def test_a_fault_the_sp_raises_carries_the_fault_to_parameters(
    actors: tuple[Actor, Actor], version: str
) -> None:
    """An Action the service does not have: wsa:ActionNotSupported, from the SP itself."""
    sp, _ = actors
    url = sp.url + "/services/Echo"
    action = ECHO_NS + "/Nope"
    headers, message_id = wsa_headers(
        to=url, action=action, extra=fault_to(ns.WSA_ANONYMOUS, KEY_PARAM)
    )
    reply = post(url, envelope(echo("x"), headers, version), version, soap_action=action)
    assert header_text(reply, "Action") == ns.WSA_FAULT_ACTION
    assert header_text(reply, "RelatesTo") == message_id
    (block,) = reference_blocks(reply)
    check_key(block)


@VERSIONS
@pytest.mark.parametrize("where", ["sp-port", "hp-port"])
def test_management_port_replies_and_faults_carry_parameters(
    actors: tuple[Actor, Actor], version: str, where: str
) -> None:
    sp, hp = actors
    url, body, action = {
        "sp-port": (sp.url + SP_PORT, SP_LIST, SP_LIST_ACTION),
        "hp-port": (hp.url + HP_PORT, HP_STATUS, HP_STATUS_ACTION),
    }[where]
    extra = reply_to(ns.WSA_ANONYMOUS, KEY_PARAM) + fault_to(ns.WSA_ANONYMOUS, OTHER_PARAM)
    headers, message_id = wsa_headers(to=url, action=action, extra=extra)
    reply = post(url, envelope(body, headers, version), version, soap_action=action)
    assert reply.status == 200, reply.body
    assert header_text(reply, "RelatesTo") == message_id
    (block,) = reference_blocks(reply)
    check_key(block)
    assert reference_blocks(reply, OTHER) == []
    # A fault (an Action the port does not have) carries the FaultTo's instead.
    headers, _ = wsa_headers(to=url, action=action + "Nope", extra=extra)
    fault = post(url, envelope(body, headers, version), version, soap_action=action + "Nope")
    assert fault.status in (400, 500)
    assert [b.text for b in reference_blocks(fault, OTHER)] == ["s-42"]
    assert reference_blocks(fault) == []


@VERSIONS
@pytest.mark.parametrize("where", ["service", "sp-port"])
def test_2004_reference_properties_and_parameters_come_back_unmarked(
    actors: tuple[Actor, Actor], version: str, where: str
) -> None:
    """The 2004/08 submission (§2.3 of its binding): each reference property and parameter
    is a header block of the reply, with no IsReferenceParameter attribute (1.0's)."""
    sp, _ = actors
    url, body, action = {
        "service": (sp.url + "/services/Echo", echo("2004"), ECHO_ACTION),
        "sp-port": (sp.url + SP_PORT, SP_LIST, SP_LIST_ACTION),
    }[where]
    anonymous = ns.WSA_2004_ANONYMOUS
    extra = epr("ReplyTo", anonymous, params=OTHER_PARAM, properties=KEY_PARAM)
    headers, message_id = wsa_headers(to=url, action=action, extra=extra)
    reply = post(
        url, envelope(body, headers, version, wsa=ns.WSA_2004), version, soap_action=action
    )
    assert reply.status == 200, reply.body
    assert header_text(reply, "RelatesTo", ns.WSA_2004) == message_id
    (key,) = reference_blocks(reply)
    check_key(key, marked=False)
    (session,) = reference_blocks(reply, OTHER)
    assert session.text == "s-42" and not session.attrib
