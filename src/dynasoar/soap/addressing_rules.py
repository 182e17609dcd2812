"""The rules a receiving endpoint applies to WS-Addressing properties (W3C WS-Addressing 1.0
SOAP Binding §6): required headers, cardinality, SOAPAction = wsa:Action, a known Action, a
destination that is this endpoint, reply endpoints it can answer. Each broken rule raises the
spec's fault."""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass

from dynasoar import ns
from dynasoar.errors import (
    ActionNotSupported,
    DestinationUnreachable,
    InvalidAddressingHeader,
    MalformedMessage,
    MessageAddressingHeaderRequired,
    QName,
)
from dynasoar.soap.addressing import AddressingHeaders
from dynasoar.soap.mime import parse_content_type
from dynasoar.soap.replies import is_anonymous, is_none

#: Checks a ReplyTo / FaultTo address that is neither anonymous nor none: (the header's
#: qualified name, its address) -> None, or raises the fault to answer with.
ReplyAddressCheck = Callable[[QName, str], None]


def anonymous_only(header: QName, address: str) -> None:
    """Replies go back on the HTTP response only (WS-Addressing Metadata §3.1.1's fault)."""
    raise InvalidAddressingHeader(
        f"wsa:{header[1]} must be anonymous (or none) here: replies go back on the HTTP "
        f"response, and {address!r} is neither",
        subsubcode="OnlyAnonymousAddressSupported",
        problem_header=header,
    )


@dataclass(frozen=True)
class EndpointRules:
    """What one endpoint accepts."""

    #: Addressing required (the management ports) or optional (advertised services).
    required: bool
    #: Actions of the endpoint's operations; None accepts any (checked further downstream).
    actions: Container[str] | None
    #: Is a reply expected for this action (request-response operation)?
    expects_reply: Callable[[str], bool]
    #: Does a wsa:To value name this endpoint?
    is_destination: Callable[[str], bool]
    #: What a ReplyTo / FaultTo that is neither anonymous nor none must pass.
    reply_address: ReplyAddressCheck = anonymous_only


def check_request(
    headers: AddressingHeaders, soap_action: str | None, rules: EndpointRules
) -> None:
    """Raise the WS-Addressing fault for the first broken rule; return when all hold."""
    wsa = headers.namespace
    if not headers.present:
        if rules.required:
            raise MessageAddressingHeaderRequired(
                "this endpoint requires WS-Addressing: send wsa:Action, wsa:MessageID and wsa:To",
                problem_header=(ns.WSA, "Action"),
            )
        return
    if headers.repeated:
        name = headers.repeated[0]
        raise InvalidAddressingHeader(
            f"the header wsa:{name[1]} appears more than once",
            subsubcode="InvalidCardinality",
            problem_header=name,
        )
    for name in headers.invalid:
        is_epr = name[1] in ("ReplyTo", "FaultTo", "From")
        raise InvalidAddressingHeader(
            f"wsa:{name[1]} has no Address" if is_epr else f"wsa:{name[1]} is empty",
            subsubcode="MissingAddressInEPR" if is_epr else None,
            problem_header=name,
        )
    if headers.action is None:
        raise MessageAddressingHeaderRequired(
            "the message uses WS-Addressing but has no wsa:Action", problem_header=(wsa, "Action")
        )
    if soap_action and soap_action != headers.action:
        raise InvalidAddressingHeader(
            f"SOAPAction {soap_action!r} differs from wsa:Action {headers.action!r}",
            subsubcode="ActionMismatch",
            problem_header=(wsa, "Action"),
        )
    for header, epr in (("ReplyTo", headers.reply_to), ("FaultTo", headers.fault_to)):
        if epr is not None and not is_anonymous(epr.address) and not is_none(epr.address):
            rules.reply_address((wsa, header), epr.address)
    if headers.to and not is_anonymous(headers.to) and not rules.is_destination(headers.to):
        raise DestinationUnreachable(
            f"no endpoint here answers to wsa:To {headers.to!r}", iri=headers.to
        )
    if rules.actions is not None and headers.action not in rules.actions:
        raise ActionNotSupported(
            f"the action {headers.action!r} is not an operation of this endpoint",
            action=headers.action,
        )
    if rules.expects_reply(headers.action) and not headers.message_id:
        raise MessageAddressingHeaderRequired(
            "a request that expects a reply must carry wsa:MessageID",
            problem_header=(wsa, "MessageID"),
        )


def soap_action_of(content_type: str | None, soapaction_header: str | None) -> str | None:
    """The action a transport carried: SOAPAction (SOAP 1.1) or the action parameter (1.2)."""
    if soapaction_header is not None:
        value = soapaction_header.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        return value or None
    if content_type:
        try:
            return parse_content_type(content_type).get("action") or None
        except MalformedMessage:
            return None
    return None
