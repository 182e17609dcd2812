"""Where a reply or a fault goes and what it carries (WS-Addressing 1.0 Core §3.4, SOAP Binding
§3 and §5): the endpoint reference selected for it, what kind of destination that is, and the
header blocks the reply must carry. A reply someone else wrote (a deployed service's) is filled
in with what it left out, and nothing it already has is added twice. Pure: no I/O, no actor."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

from lxml import etree

from dynasoar import ns
from dynasoar.errors import DynasoarError, InvalidAddressingHeader, MessageAddressingHeaderRequired
from dynasoar.soap import addressing
from dynasoar.soap.addressing import AddressingHeaders, EndpointReference
from dynasoar.soap.envelope import Envelope, clark, ensure_header

_IS_REFERENCE_PARAMETER = f"{{{ns.WSA}}}IsReferenceParameter"


class Destination(enum.Enum):
    #: The reply is the response of the request's own HTTP exchange.
    ANONYMOUS = "anonymous"
    #: ``.../addressing/none``: the reply is discarded (Core §2.1); HTTP answers 202, empty.
    NONE = "none"
    #: A message of its own, sent to the endpoint's address (SOAP Binding §5.2).
    ADDRESS = "address"


def is_anonymous(address: str) -> bool:
    return address in (ns.WSA_ANONYMOUS, ns.WSA_2004_ANONYMOUS)


def is_none(address: str) -> bool:
    return address == ns.WSA_NONE


def kind_of(address: str) -> Destination:
    if is_anonymous(address):
        return Destination.ANONYMOUS
    if is_none(address):
        return Destination.NONE
    return Destination.ADDRESS


@dataclass(frozen=True)
class ReplyTarget:
    """The endpoint a reply (or fault) is for; ``epr`` None is the anonymous default."""

    kind: Destination
    epr: EndpointReference | None = None
    #: Which header the endpoint came from ("ReplyTo", "FaultTo"), if any.
    header: str | None = None

    @property
    def address(self) -> str | None:
        """Where to send it: only for :attr:`Destination.ADDRESS`."""
        return (
            self.epr.address if self.epr is not None and self.kind is Destination.ADDRESS else None
        )


ANONYMOUS = ReplyTarget(Destination.ANONYMOUS)


def select(request: AddressingHeaders | None, *, fault: bool) -> ReplyTarget:
    """Core §3.4: a fault goes to the [fault endpoint] when the request named one; any reply
    otherwise to the [reply endpoint], whose default is anonymous."""
    if request is None or not request.present:
        return ANONYMOUS
    header, epr = "ReplyTo", request.reply_to
    if fault and request.fault_to is not None:
        header, epr = "FaultTo", request.fault_to
    if epr is None:
        return ANONYMOUS
    return ReplyTarget(kind_of(epr.address), epr, header)


def fault_target(request: AddressingHeaders | None, error: DynasoarError) -> ReplyTarget:
    """Where ``error``, a fault about ``request``, goes: its [fault endpoint] (else [reply
    endpoint]) once its addressing headers are accepted; a fault about the headers themselves
    (a duplicated or broken one, a missing one, a ReplyTo / FaultTo refused) goes back on the
    HTTP response, as the SOAP binding allows until they are accepted."""
    if request is None or not request.present or request.repeated or request.invalid:
        return ANONYMOUS
    if isinstance(error, InvalidAddressingHeader | MessageAddressingHeaderRequired):
        return ANONYMOUS
    return select(request, fault=True)


def reply_blocks(
    request: AddressingHeaders, action: str, target: ReplyTarget
) -> list[etree._Element]:
    """The header blocks of a reply to ``request`` for ``target``: To (for a reply sent to an
    address of its own), Action, MessageID, RelatesTo and the endpoint's reference
    parameters."""
    headers = addressing.reply_headers(request, action, to=target.address)
    blocks = addressing.write_headers(headers)
    if target.epr is not None:
        blocks += addressing.reference_parameter_blocks(target.epr, request.namespace)
    return blocks


def complete(
    envelope: Envelope, request: AddressingHeaders, action: str, target: ReplyTarget
) -> bool:
    """Add to a reply envelope (in place) what the reply to ``request`` for ``target`` must
    carry and it lacks: the addressing headers when it has none in the request's namespace
    (else only a missing To, Action or RelatesTo), then each reference parameter it does not
    carry yet. Returns whether anything was added."""
    wsa = request.namespace
    mine = [b for b in envelope.header_blocks if clark(b.tag)[0] == wsa]
    added: list[etree._Element] = []
    changed = False
    if not mine:
        added += reply_blocks(request, action, ANONYMOUS)
        if target.address is not None:
            added.insert(0, _text_block(wsa, "To", target.address))
    else:
        present = {clark(b.tag)[1]: b for b in mine}
        if target.address is not None:
            to = present.get("To")
            if to is None:
                to = _text_block(wsa, "To", target.address)
                mine[0].addprevious(to)  # first among the addressing headers, as written
                envelope.header_blocks.insert(envelope.header_blocks.index(mine[0]), to)
                changed = True
            elif is_anonymous((to.text or "").strip()):
                to.text = target.address
                changed = True
        if "Action" not in present:
            added.append(_text_block(wsa, "Action", action))
        if "RelatesTo" not in present and request.message_id:
            added.append(_text_block(wsa, "RelatesTo", request.message_id))
    if target.epr is not None:
        added += _missing(addressing.reference_parameter_blocks(target.epr, wsa), envelope, wsa)
    if not added:
        return changed
    ensure_header(envelope.root, envelope.version).extend(added)
    envelope.header_blocks.extend(added)
    return True


def _text_block(wsa: str, name: str, value: str) -> etree._Element:
    el = etree.Element(f"{{{wsa}}}{name}", nsmap={"wsa04" if wsa == ns.WSA_2004 else "wsa": wsa})
    el.text = value
    return el


def _missing(wanted: list[etree._Element], envelope: Envelope, wsa: str) -> list[etree._Element]:
    """The blocks of ``wanted`` the envelope does not carry yet, counting duplicates (an EPR
    may hold the same parameter twice). In 1.0 a block counts only when it is marked as a
    reference parameter: a service's own header of the same name is something else."""
    have = Counter(
        _identity(b)
        for b in envelope.header_blocks
        if wsa != ns.WSA or b.get(_IS_REFERENCE_PARAMETER) in ("true", "1")
    )
    out = []
    for block in wanted:
        key = _identity(block)
        if have[key] > 0:
            have[key] -= 1
        else:
            out.append(block)
    return out


def _identity(block: etree._Element) -> tuple[str, bytes]:
    """A reference parameter's name and content, whatever its prefixes and marking."""
    copy = etree.fromstring(etree.tostring(block))
    copy.attrib.pop(_IS_REFERENCE_PARAMETER, None)
    return str(copy.tag), etree.tostring(copy, method="c14n", exclusive=True)
