"""WS-Addressing 1.0 SOAP Binding §6 (Faults), on the wire, SOAP 1.1 and 1.2, at the three
kinds of endpoint: through the SP to an advertised service, at the SP's management port and at
the HP's port. Each fault WS-Addressing defines comes with its code and subcodes (SOAP 1.1:
the subcode as faultcode), the Action ``.../addressing/fault`` (generic SOAP faults and
dynasoar's own: ``.../soap/fault``), RelatesTo the request, its detail (ProblemHeaderQName,
ProblemAction, ProblemIRI: SOAP 1.2 in the Detail, SOAP 1.1 in a wsa:FaultDetail header), and
the wsa prefix declared on the Fault element itself. The cases follow the W3C test suite's
SOAP-binding fault scenarios (duplicated headers, a missing Action or MessageID, an EPR without
Address, SOAPAction != Action, an unknown Action, a destination that is not this endpoint)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dynasoar import ns
from dynasoar.paths import samples_dir
from dynasoar.procs import Actor, start_actor

from .conftest import Cluster, wait_for
from .wire import ECHO_ACTION, echo_body, envelope, post
from .wsa import (
    HP_PORT,
    HP_STATUS,
    HP_STATUS_ACTION,
    SP_LIST,
    SP_LIST_ACTION,
    SP_PORT,
    declared_on_the_fault,
    fault_to,
    header_text,
    problem_header,
    reply_to,
)

W = "{%s}" % ns.WSA
W04 = "{%s}" % ns.WSA_2004
DYN = "{%s}" % ns.DYN
S11, S12 = "{%s}" % ns.SOAP11_ENV, "{%s}" % ns.SOAP12_ENV
VERSIONS = pytest.mark.parametrize("version", ["1.1", "1.2"])
MID = "urn:uuid:00000000-0000-0000-0000-00000000f00d"


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    body: str
    action: str

    @property
    def service(self) -> bool:
        return self.name == "service"


@pytest.fixture(scope="module")
def actors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Actor, Actor]]:
    work = tmp_path_factory.mktemp("s6")
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


def targets(sp: Actor, hp: Actor) -> dict[str, Target]:
    return {
        "service": Target("service", sp.url + "/services/Echo", echo_body(), ECHO_ACTION),
        "sp-port": Target("sp-port", sp.url + SP_PORT, SP_LIST, SP_LIST_ACTION),
        "hp-port": Target("hp-port", hp.url + HP_PORT, HP_STATUS, HP_STATUS_ACTION),
    }


TARGETS = pytest.mark.parametrize("where", ["service", "sp-port", "hp-port"])


def h(to: str | None, action: str | None, message_id: str | None = MID, extra: str = "") -> str:
    parts = []
    if to is not None:
        parts.append(f"<wsa:To>{to}</wsa:To>")
    if action is not None:
        parts.append(f"<wsa:Action>{action}</wsa:Action>")
    if message_id is not None:
        parts.append(f"<wsa:MessageID>{message_id}</wsa:MessageID>")
    return "".join(parts) + extra


@dataclass(frozen=True)
class Case:
    #: The request's WS-A headers and SOAPAction, for a target.
    headers: Callable[[Target], str]
    codes: tuple[str, ...]
    problem: str | None = None  # the ProblemHeaderQName's local name (in wsa)
    soap_action: Callable[[Target], str | None] = lambda t: t.action
    relates: bool = True
    #: Replaces ``codes`` at the SP's and HP's ports (they refuse any non-anonymous reply).
    port_codes: tuple[str, ...] | None = None


NOT_ANON = "http://127.0.0.1:9/replies"
CASES: dict[str, Case] = {
    **{
        f"duplicate-{name}": Case(
            lambda t, name=name, block=block: h(t.url, t.action, extra=block(t)),
            (W + "InvalidAddressingHeader", W + "InvalidCardinality"),
            name,
        )
        for name, block in {
            "To": lambda t: f"<wsa:To>{t.url}</wsa:To>",
            "Action": lambda t: f"<wsa:Action>{t.action}</wsa:Action>",
            "MessageID": lambda t: "<wsa:MessageID>urn:uuid:second</wsa:MessageID>",
            "ReplyTo": lambda t: reply_to(ns.WSA_ANONYMOUS) * 2,
            "FaultTo": lambda t: fault_to(ns.WSA_ANONYMOUS) * 2,
        }.items()
    },
    "reply-to-without-address": Case(
        lambda t: h(t.url, t.action, extra="<wsa:ReplyTo><wsa:ReferenceParameters/></wsa:ReplyTo>"),
        (W + "InvalidAddressingHeader", W + "MissingAddressInEPR"),
        "ReplyTo",
    ),
    "soapaction-is-not-the-action": Case(
        lambda t: h(t.url, t.action),
        (W + "InvalidAddressingHeader", W + "ActionMismatch"),
        "Action",
        soap_action=lambda t: "urn:example:another-action",
    ),
    "no-action": Case(
        lambda t: h(t.url, None),
        (W + "MessageAddressingHeaderRequired",),
        "Action",
        soap_action=lambda t: None,
    ),
    "request-response-without-message-id": Case(
        lambda t: h(t.url, t.action, message_id=None),
        (W + "MessageAddressingHeaderRequired",),
        "MessageID",
        relates=False,
    ),
    "unknown-action": Case(
        lambda t: h(t.url, t.action + "Nope"),
        (W + "ActionNotSupported",),
        soap_action=lambda t: t.action + "Nope",
    ),
    "to-another-port": Case(
        lambda t: h(t.url.replace("127.0.0.1:", "127.0.0.1:1"), t.action),
        (W + "DestinationUnreachable",),
    ),
    "to-another-endpoint": Case(
        lambda t: h(t.url + "Elsewhere", t.action),
        (W + "DestinationUnreachable",),
    ),
    "non-anonymous-reply-to": Case(
        lambda t: h(t.url, t.action, extra=reply_to(NOT_ANON)),
        (W + "InvalidAddressingHeader", DYN + "ReplyToNotAllowed"),
        "ReplyTo",
        port_codes=(W + "InvalidAddressingHeader", W + "OnlyAnonymousAddressSupported"),
    ),
    "non-anonymous-fault-to": Case(
        lambda t: h(t.url, t.action, extra=fault_to(NOT_ANON)),
        (W + "InvalidAddressingHeader", DYN + "ReplyToNotAllowed"),
        "FaultTo",
        port_codes=(W + "InvalidAddressingHeader", W + "OnlyAnonymousAddressSupported"),
    ),
}


def expected_codes(version: str, codes: tuple[str, ...]) -> list[str]:
    """SOAP 1.2: Sender, then the subcodes; SOAP 1.1: the subcode is the faultcode."""
    return [S12 + "Sender", *codes] if version == "1.2" else [codes[0]]


@VERSIONS
@TARGETS
@pytest.mark.parametrize("case", CASES)
def test_each_ws_addressing_fault(
    actors: tuple[Actor, Actor], where: str, case: str, version: str
) -> None:
    target = targets(*actors)[where]
    c = CASES[case]
    reply = post(
        target.url,
        envelope(target.body, c.headers(target), version),
        version,
        soap_action=c.soap_action(target),
    )
    codes = c.port_codes if c.port_codes is not None and not target.service else c.codes
    assert reply.fault_codes() == expected_codes(version, codes), reply.body
    assert reply.status == (400 if version == "1.2" else 500)
    assert header_text(reply, "Action") == ns.WSA_FAULT_ACTION
    assert header_text(reply, "RelatesTo") == (MID if c.relates else None)
    assert header_text(reply, "MessageID") not in (None, MID)
    assert problem_header(reply) == ((ns.WSA, c.problem) if c.problem else None)
    if case == "unknown-action":
        assert reply.text(".//wsa:ProblemAction/wsa:Action") == target.action + "Nope"
    if case.startswith("to-another"):
        assert reply.text(".//wsa:ProblemIRI") is not None
    assert declared_on_the_fault(reply, ns.WSA), "the Fault declares wsa itself"


@VERSIONS
def test_a_refused_message_deploys_nothing(
    actors: tuple[Actor, Actor], version: str, tmp_path: Path
) -> None:
    sp, hp = actors
    target = targets(sp, hp)["service"]
    for c in CASES.values():
        body = envelope(target.body, c.headers(target), version)
        assert post(target.url, body, version, soap_action=c.soap_action(target)).status != 200
    assert not Cluster(tmp_path, sp).client.call("ListDeployments")


@VERSIONS
@TARGETS
def test_a_generic_soap_fault_has_the_soap_fault_action(
    actors: tuple[Actor, Actor], where: str, version: str
) -> None:
    """env:MustUnderstand is a generic SOAP fault: ``.../soap/fault`` (SOAP Binding §6)."""
    target = targets(*actors)[where]
    env = ns.SOAP11_ENV if version == "1.1" else ns.SOAP12_ENV
    must = "1" if version == "1.1" else "true"
    block = (
        f'<x:Transaction xmlns:x="urn:example:tx" xmlns:e="{env}" e:mustUnderstand="{must}">'
        "42</x:Transaction>"
    )
    reply = post(
        target.url,
        envelope(target.body, h(target.url, target.action, extra=block), version),
        version,
        soap_action=target.action,
    )
    assert reply.fault_codes()[0] == "{%s}MustUnderstand" % env, reply.body
    assert header_text(reply, "Action") == ns.WSA_SOAP_FAULT_ACTION
    assert header_text(reply, "RelatesTo") == MID


@VERSIONS
def test_dynasoars_own_faults_have_the_soap_fault_action(
    actors: tuple[Actor, Actor], version: str
) -> None:
    sp, _ = actors
    port = sp.url + SP_PORT
    action = f"{ns.DYN_SP}/Deploy"
    body = f'<sp:Deploy xmlns:sp="{ns.DYN_SP}"><sp:name>NoSuchService</sp:name></sp:Deploy>'
    reply = post(port, envelope(body, h(port, action), version), version, soap_action=action)
    assert DYN + "UnknownService" in reply.fault_codes(), reply.body
    assert header_text(reply, "Action") == ns.WSA_SOAP_FAULT_ACTION
    assert header_text(reply, "RelatesTo") == MID


@VERSIONS
@TARGETS
def test_a_2004_request_gets_its_fault_and_detail_in_2004(
    actors: tuple[Actor, Actor], where: str, version: str
) -> None:
    target = targets(*actors)[where]
    headers = h(target.url, target.action, extra=f"<wsa:To>{target.url}</wsa:To>")
    reply = post(
        target.url,
        envelope(target.body, headers, version, wsa=ns.WSA_2004),
        version,
        soap_action=target.action,
    )
    assert reply.fault_codes() == expected_codes(
        version, (W04 + "InvalidMessageInformationHeader",)
    )
    assert header_text(reply, "Action", ns.WSA_2004) == ns.WSA_2004_FAULT_ACTION
    assert header_text(reply, "RelatesTo", ns.WSA_2004) == MID
    assert problem_header(reply, ns.WSA_2004) == (ns.WSA_2004, "To")
    assert b"http://www.w3.org/2005/08/addressing" not in reply.body, "nothing in 1.0's namespace"


@pytest.fixture(scope="module")
def status_500(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Actor, Actor]]:
    work = tmp_path_factory.mktemp("s6-500")
    flag = ["--soap12-sender-status", "500"]
    sp = start_actor("sp", ["--port", "0", "--data", str(work / "sp"), *flag], work / "sp.log")
    hp = start_actor(
        "hp", ["--port", "0", "--data", str(work / "hp"), "--sp", sp.url, *flag], work / "hp.log"
    )
    try:
        Cluster(work, sp, [hp]).client.publish(samples_dir() / "echo")
        yield sp, hp
    finally:
        hp.stop()
        sp.stop()


@TARGETS
def test_soap12_sender_faults_can_be_sent_as_500(
    status_500: tuple[Actor, Actor], where: str
) -> None:
    """``--soap12-sender-status 500``: for WCF-family clients, which take a 400 for a
    transport error. The fault itself is unchanged: Sender, and its subcodes."""
    target = targets(*status_500)[where]
    c = CASES["unknown-action"]
    reply = post(
        target.url, envelope(target.body, c.headers(target), "1.2"), "1.2", soap_action=None
    )
    assert reply.status == 500
    assert reply.fault_codes() == expected_codes("1.2", c.codes)
