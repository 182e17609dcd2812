"""The one exception tree of dynasoar.

Every error a peer should hear about is a :class:`DynasoarError`; :mod:`dynasoar.soap.faults`
turns it into a SOAP 1.1 or 1.2 fault (the only place that does). Library errors (lxml,
HTTP, sqlite, subprocess) are wrapped where they are caught, with ``raise ... from exc``::

    DynasoarError
    ├── SenderError                       the message or request is at fault (env:Sender / Client)
    │   ├── MalformedMessage              not XML, a DTD, not a SOAP envelope
    │   ├── VersionMismatch               not a SOAP 1.1 / 1.2 envelope (env:VersionMismatch)
    │   ├── MustUnderstand                a mustUnderstand header we do not process
    │   ├── PayloadTooLarge               over a size limit
    │   ├── InvalidPackage                a service package we refuse
    │   ├── UnknownService                a name no one has published (management ports)
    │   ├── UnknownHost                   a host that never registered here
    │   ├── InvalidRequest                a well-formed request we cannot act on
    │   ├── ImageNotHeld                  a Deploy left out an image the host does not hold
    │   ├── SnapshotIncompatible          a VM snapshot taken on another machine type or CPU
    │   ├── SecurityFault                 WS-Security 1.1 faults (wsse: codes)
    │   │   ├── InvalidSecurity           no / malformed wsse:Security, not covering what it must
    │   │   ├── FailedAuthentication      untrusted signer, bad signature, replayed message
    │   │   └── MessageExpired            the wsu:Timestamp is outside its window
    │   └── AddressingFault               WS-Addressing 1.0 faults (their own codes)
    │       ├── InvalidAddressingHeader   (with a subcode such as ActionMismatch)
    │       │   └── ReplyToNotAllowed     a ReplyTo / FaultTo the operator does not deliver to
    │       ├── MessageAddressingHeaderRequired
    │       ├── ActionNotSupported
    │       ├── DestinationUnreachable
    │       └── EndpointUnavailable       a Receiver fault, with RetryAfter
    ├── ReceiverError                     we could not do it (env:Receiver / Server)
    │   ├── NoHostAvailable               dyn:NoHostAvailable
    │   ├── DeploymentFailed              dyn:DeploymentFailed
    │   ├── DeploymentTimeout             dyn:DeploymentTimeout
    │   ├── HostLost                      dyn:HostLost
    │   ├── Busy                          dyn:Busy
    │   ├── ShuttingDown                  dyn:ShuttingDown: the actor stopped before answering
    │   ├── CallTimeout                   dyn:CallTimeout: the service did not answer in time
    │   ├── Interrupted                   dyn:Interrupted (a restart cut a message's processing)
    │   ├── RegistryUnavailable           dyn:RegistryUnavailable: the shared registry's database
    │   │                                 cannot be reached (what needs it waits for it)
    │   ├── ImageUnavailable              dyn:ImageUnavailable: a VM image this SP lacks is held
    │   │                                 by no other SP sharing the registry that it can reach
    │   └── TransportError                an HTTP exchange with a peer failed
    │       └── Unreachable               ... before it began: nothing answers at that address
    └── RemoteFault                       a SOAP fault a peer sent us (client side)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from dynasoar import ns

#: A qualified name as (namespace, local name).
QName = tuple[str, str]

#: WS-Security 1.0 secext: the namespace of its fault codes (SOAP Message Security 1.1 §12).
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"


@dataclass(frozen=True)
class DetailItem:
    """One element of fault detail: ``<{namespace}name>text</...>``."""

    name: QName
    text: str


class DynasoarError(Exception):
    """Base of every error dynasoar reports to a peer.

    ``subcode`` is the SOAP 1.2 Subcode (and the SOAP 1.1 detail element or faultcode, see
    :mod:`dynasoar.soap.faults`). The HTTP status of a fault follows from the SOAP version and
    ``sender``, as the SOAP HTTP bindings rule it, so errors carry none.
    """

    sender: ClassVar[bool] = False
    subcode: ClassVar[QName | None] = None

    def __init__(self, reason: str, *, detail: tuple[DetailItem, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class SenderError(DynasoarError):
    sender = True


class MalformedMessage(SenderError):
    subcode = (ns.DYN, "MalformedMessage")


class VersionMismatch(SenderError):
    """The envelope is not in a SOAP namespace we speak (rendered as env:VersionMismatch)."""


class MustUnderstand(SenderError):
    """Header blocks marked mustUnderstand that this endpoint does not process (rendered as
    env:MustUnderstand, with SOAP 1.2 env:NotUnderstood header blocks naming them)."""

    def __init__(self, reason: str, *, not_understood: tuple[QName, ...]) -> None:
        super().__init__(reason)
        self.not_understood = not_understood


class PayloadTooLarge(SenderError):
    subcode = (ns.DYN, "PayloadTooLarge")


class InvalidPackage(SenderError):
    subcode = (ns.DYN, "InvalidPackage")


class UnknownService(SenderError):
    subcode = (ns.DYN, "UnknownService")


class UnknownHost(SenderError):
    subcode = (ns.DYN, "UnknownHost")


class InvalidRequest(SenderError):
    subcode = (ns.DYN, "InvalidRequest")


class ImageNotHeld(SenderError):
    """A Deploy left out an image's content, but the host does not hold that image."""

    subcode = (ns.DYN, "ImageNotHeld")


class SnapshotIncompatible(SenderError):
    """A VM snapshot was taken on a QEMU machine type, CPU model or accelerator this host does
    not run: its memory state cannot be restored here (the guest would have to boot)."""

    subcode = (ns.DYN, "SnapshotIncompatible")


class SecurityFault(SenderError):
    """A WS-Security fault (SOAP Message Security 1.1 §12): its subcode is the fault code.

    The reason says what is wrong and what to do about it; the spec's stock fault strings
    ("The security token could not be authenticated or authorized") help no operator.
    """


class InvalidSecurity(SecurityFault):
    """The wsse:Security header is missing, malformed, or does not cover what it must."""

    subcode = (WSSE, "InvalidSecurity")


class FailedAuthentication(SecurityFault):
    """The signer is not trusted, the signature does not verify, or the message is a replay."""

    subcode = (WSSE, "FailedAuthentication")


class MessageExpired(SecurityFault):
    """The message's wsu:Timestamp is outside its validity window (allowing for clock skew)."""

    subcode = (WSSE, "MessageExpired")


class AddressingFault(SenderError):
    """A WS-Addressing 1.0 fault (W3C WS-Addressing 1.0 SOAP Binding, section 6).

    ``subsubcode`` refines InvalidAddressingHeader (for example ``wsa:ActionMismatch``).
    """

    subsubcode: QName | None = None


class InvalidAddressingHeader(AddressingFault):
    """``subsubcode``: a WS-Addressing name (``"ActionMismatch"``) or a qualified name of
    another vocabulary's (``(ns.DYN, "ReplyToNotAllowed")``)."""

    subcode = (ns.WSA, "InvalidAddressingHeader")

    def __init__(
        self, reason: str, *, subsubcode: str | QName | None, problem_header: QName | None
    ) -> None:
        detail = (problem_header_detail(problem_header),) if problem_header else ()
        super().__init__(reason, detail=detail)
        if isinstance(subsubcode, str):
            subsubcode = (ns.WSA, subsubcode)
        self.subsubcode = subsubcode


class ReplyToNotAllowed(InvalidAddressingHeader):
    """A non-anonymous wsa:ReplyTo / wsa:FaultTo the operator has not allowed replies to go to
    (a reply sent there would be a request made on a stranger's behalf)."""

    def __init__(self, reason: str, *, problem_header: QName) -> None:
        super().__init__(
            reason, subsubcode=(ns.DYN, "ReplyToNotAllowed"), problem_header=problem_header
        )


class MessageAddressingHeaderRequired(AddressingFault):
    subcode = (ns.WSA, "MessageAddressingHeaderRequired")

    def __init__(self, reason: str, *, problem_header: QName) -> None:
        super().__init__(reason, detail=(problem_header_detail(problem_header),))


class ActionNotSupported(AddressingFault):
    subcode = (ns.WSA, "ActionNotSupported")

    def __init__(self, reason: str, *, action: str) -> None:
        super().__init__(reason, detail=(DetailItem((ns.WSA, "ProblemAction"), action),))
        self.action = action


class DestinationUnreachable(AddressingFault):
    subcode = (ns.WSA, "DestinationUnreachable")

    def __init__(self, reason: str, *, iri: str | None = None) -> None:
        detail = (DetailItem((ns.WSA, "ProblemIRI"), iri),) if iri else ()
        super().__init__(reason, detail=detail)


class EndpointUnavailable(AddressingFault):
    sender = False
    subcode = (ns.WSA, "EndpointUnavailable")

    def __init__(self, reason: str, *, retry_after_ms: int | None = None) -> None:
        detail = (
            (DetailItem((ns.WSA, "RetryAfter"), str(retry_after_ms)),)
            if retry_after_ms is not None
            else ()
        )
        super().__init__(reason, detail=detail)
        self.retry_after_ms = retry_after_ms


def problem_header_detail(name: QName) -> DetailItem:
    """wsa:ProblemHeaderQName detail; the text is a prefixed QName bound by the renderer."""
    return DetailItem((ns.WSA, "ProblemHeaderQName"), "{%s}%s" % name)


class ReceiverError(DynasoarError):
    sender = False


class NoHostAvailable(ReceiverError):
    subcode = (ns.DYN, "NoHostAvailable")


class DeploymentFailed(ReceiverError):
    subcode = (ns.DYN, "DeploymentFailed")


class DeploymentTimeout(ReceiverError):
    subcode = (ns.DYN, "DeploymentTimeout")


class HostLost(ReceiverError):
    subcode = (ns.DYN, "HostLost")


class Busy(ReceiverError):
    subcode = (ns.DYN, "Busy")


class ShuttingDown(ReceiverError):
    """The actor is stopping (or restarting in place) and its grace period ran out before
    this message was answered; it may or may not have reached the service."""

    subcode = (ns.DYN, "ShuttingDown")


class CallTimeout(ReceiverError):
    """The deployed service did not answer within the service's call deadline."""

    subcode = (ns.DYN, "CallTimeout")


class Interrupted(ReceiverError):
    """The Service Provider stopped while a message accepted for an asynchronous reply was at a
    stateful service; it is not sent again, since it may have run there already."""

    subcode = (ns.DYN, "Interrupted")


class RegistryUnavailable(ReceiverError):
    """The registry's database cannot be reached (a shared PostgreSQL restarting, say): what
    needs a change recorded (a new deployment) cannot be done now; known deployments still
    answer."""

    subcode = (ns.DYN, "RegistryUnavailable")


class ImageUnavailable(ReceiverError):
    """A VM image this Service Provider must ship is not in its repository, and no other SP
    sharing the registry that holds it could send it (none records it, none is running, or
    each failed): the package must be published again where it can be deployed from."""

    subcode = (ns.DYN, "ImageUnavailable")


class TransportError(ReceiverError):
    """An HTTP exchange with a peer failed (connect, read, timeout, protocol)."""

    subcode = (ns.DYN, "TransportError")


class Unreachable(TransportError):
    """No connection could be made to the peer (refused, no route, a name that does not
    resolve): it is not running there, or the address is wrong. ``why`` is the cause alone
    ("connection refused")."""

    def __init__(self, reason: str, *, why: str = "") -> None:
        super().__init__(reason)
        self.why = why or reason


@dataclass
class FaultInfo:
    """A SOAP fault as read off the wire (either SOAP version)."""

    code: QName
    subcodes: list[QName] = field(default_factory=list)
    reason: str = ""
    detail_xml: bytes = b""


class RemoteFault(DynasoarError):
    """A SOAP fault a peer answered with; raised by dynasoar's own clients."""

    def __init__(self, fault: FaultInfo, *, status: int) -> None:
        codes = " / ".join("{%s}%s" % c for c in [fault.code, *fault.subcodes])
        super().__init__(f"{fault.reason} [{codes}]")
        self.fault = fault
        self.status = status
