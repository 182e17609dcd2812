"""The one scenario every peer runs through the SP, and the checks of what it reported.

A peer (in Python, node or C++) runs these steps with its own generated client and reports each
as a dict (see :data:`STEPS`); :func:`check` asserts on them cell by cell. Fault codes arrive as
the peer read them: ``prefix:local`` text, resolved to a namespace with the peer's own prefix map
when it gives one, or ``{ns}local``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dynasoar import ns

from .results import Results

ECHO_NS = "urn:dynasoar:samples:echo"
SP_NS = ns.DYN_SP
#: What the echo sample's Compute says for millis=-1 (deploy/services/echo/echo_service.py).
COMPUTE_REFUSAL = "millis must be between 0 and 60000, got -1"

#: step -> what it does. Every peer runs all of them; "plain" and "mtom_*" where it can.
STEPS = {
    "cold": "Echo with WS-A; the first message to the peer's service: deploys it",
    "warm": "Echo with WS-A; relayed to the same deployment",
    "plain": "Echo without WS-A; routed by URL, answered without addressing",
    "service_fault": "Compute(millis=-1) with WS-A: the deployed service's own fault",
    "provider_fault": "Echo to a package that cannot start: the SP's dyn:DeploymentFailed",
    "list_services": "ListServices on the management port (WS-A required)",
    "mtom_publish": "Publish a package as an MTOM attachment on the management port",
    "mtom_call": "Echo to the service just published: cold",
}

Step = Mapping[str, Any]


@dataclass
class Peer:
    stack: str
    version: str  # "1.1" | "1.2"
    service: str  # the service this peer calls, published for it alone
    steps: Mapping[str, Step]
    #: Resolves a prefixed QName text as the peer read it to "{ns}local" (None: cannot).
    resolve: Callable[[str, Step], str | None] = lambda text, step: None
    wsa: bool = True
    mtom_name: str | None = None
    #: column -> how this stack does it, shown as the cell's footnote in the matrix.
    how: dict[str, str] = field(default_factory=dict)

    @property
    def column(self) -> str:
        return f"SOAP {self.version}"


def local(qname: str | None) -> str:
    text = (qname or "").strip()
    if text.startswith("{"):
        return text.partition("}")[2]
    return text.rpartition(":")[2]


def check(results: Results, peer: Peer) -> None:
    """All cells for one peer and SOAP version; the first failure is raised after all ran."""
    failures: list[BaseException] = []
    checks: list[tuple[str, Callable[[Peer], None]]] = [
        (peer.column, _calls),
        ("Faults", _faults),
    ]
    if peer.wsa:
        checks.append(("WS-A", _addressing))
    if peer.mtom_name is not None:
        checks.append(("MTOM", _mtom))
    for column, run in checks:
        try:
            with results.cell(peer.stack, column, peer.how.get(column, "")):
                run(peer)
        except AssertionError as exc:
            failures.append(exc)
    if failures:
        raise failures[0]


def _step(peer: Peer, name: str) -> Step:
    step = peer.steps.get(name)
    assert step is not None, f"{peer.stack} {peer.version}: no result for step {name!r}"
    return step


def _sent_as(peer: Peer, step: Step, action: str) -> None:
    content_type = str(step.get("sent_content_type", ""))
    media_type = content_type.partition(";")[0].strip().lower()
    if peer.version == "1.1":
        assert media_type == "text/xml", content_type
        assert str(step.get("sent_soapaction", "")).strip('"') == action
    else:
        assert media_type == "application/soap+xml", content_type
        assert f'action="{action}"' in content_type or f"action={action}" in content_type


def _calls(peer: Peer) -> None:
    """Cold, then warm, then plain SOAP: answers, one deployment, the right SOAP version."""
    cold, warm = _step(peer, "cold"), _step(peer, "warm")
    for step in (cold, warm):
        assert step["ok"], step
        assert step.get("version", peer.version) == peer.version
        _sent_as(peer, step, f"{ECHO_NS}/Echo")
    assert "cold" in str(cold.get("text")), cold
    assert "warm" in str(warm.get("text")), warm
    assert cold.get("cold") == "1", "the first message deploys the service"
    assert warm.get("cold") == "0", "the second is relayed to the deployment"
    assert cold.get("deployment") and cold.get("deployment") == warm.get("deployment")
    plain = peer.steps.get("plain")
    if plain is not None:
        assert plain["ok"], plain
        assert plain.get("deployment") == cold.get("deployment")
        assert plain.get("relates_to") is None, "a plain request is answered without WS-A"
    listed = _step(peer, "list_services")
    assert listed["ok"], listed
    assert peer.service in str(listed.get("services", "")).split(","), listed


def _addressing(peer: Peer) -> None:
    """Every addressed request's reply relates to it, with the WSDL's output action."""
    expected = {
        "cold": f"{ECHO_NS}/EchoResponse",
        "warm": f"{ECHO_NS}/EchoResponse",
        # Neither is a fault WS-Addressing defines: .../soap/fault (SOAP Binding §6).
        "service_fault": ns.WSA_SOAP_FAULT_ACTION,
        "provider_fault": ns.WSA_SOAP_FAULT_ACTION,
        "list_services": f"{SP_NS}/ListServicesResponse",
    }
    for name, action in expected.items():
        step = _step(peer, name)
        assert step.get("message_id"), f"{name}: the peer sent no wsa:MessageID"
        assert step.get("relates_to") == step["message_id"], f"{name}: {step}"
        assert step.get("reply_action") == action, f"{name}: {step.get('reply_action')}"


def _faults(peer: Peer) -> None:
    """The service's own fault and the SP's dyn:DeploymentFailed, as the peer read them."""
    service = _step(peer, "service_fault")
    assert not service["ok"] and service.get("fault"), service
    assert COMPUTE_REFUSAL in str(service.get("reason")), service
    provider = _step(peer, "provider_fault")
    assert not provider["ok"] and provider.get("fault"), provider
    assert "refused Deploy" in str(provider.get("reason")), provider
    if peer.version == "1.1":
        assert local(service.get("code")) == "Client.InvalidArgument", service.get("code")
        assert local(provider.get("code")) == "Server", provider.get("code")
        # SOAP 1.1 has no subcodes: dynasoar's ride as a detail element.
        assert "DeploymentFailed" in str(provider.get("detail")), provider.get("detail")
    else:
        assert local(service.get("code")) == "Sender", service.get("code")
        assert local(service.get("subcode")) == "InvalidArgument", service.get("subcode")
        assert local(provider.get("code")) == "Receiver", provider.get("code")
        subcode = str(provider.get("subcode"))
        assert local(subcode) == "DeploymentFailed", subcode
        resolved = subcode if subcode.startswith("{") else peer.resolve(subcode, provider)
        if resolved is not None:
            assert resolved == "{%s}DeploymentFailed" % ns.DYN, resolved


def _mtom(peer: Peer) -> None:
    published = _step(peer, "mtom_publish")
    assert published["ok"], published
    content_type = str(published.get("sent_content_type", ""))
    assert content_type.lower().startswith("multipart/related"), content_type
    assert "application/xop+xml" in content_type, content_type
    assert published.get("name") == peer.mtom_name, published
    assert published.get("relates_to") == published.get("message_id")
    call = _step(peer, "mtom_call")
    assert call["ok"], call
    assert call.get("cold") == "1", call
