"""Per-message state of the routing interceptor: one :class:`MessageContext` per request."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from dynasoar.errors import DynasoarError
from dynasoar.http import Request, Response
from dynasoar.provider.registry import DeploymentRecord
from dynasoar.provider.service_provider import Advertised
from dynasoar.soap.addressing import AddressingHeaders
from dynasoar.soap.envelope import Envelope, SoapVersion


@dataclass
class MessageContext:
    request: Request
    #: The SP's URL as this consumer reached it (for addresses in replies).
    base_url: str
    deadline: float
    started: float = field(default_factory=time.monotonic)
    #: The request's SOAP version, from Content-Type until the envelope says.
    version: SoapVersion = SoapVersion.SOAP11
    #: Body bytes read while parsing the envelope head; relayed first.
    prefix: bytes = b""
    envelope: Envelope | None = None
    addressing: AddressingHeaders | None = None
    soap_action: str | None = None
    service: Advertised | None = None
    #: Who signed the message (certificate subject), for services requiring signatures.
    consumer: str | None = None
    #: The consumer's dyn:PreferredHosts, when it sent them.
    preferred: frozenset[str] | None = None
    deployment: DeploymentRecord | None = None
    cold: bool = False
    #: The relay already sent this message again after losing a deployment.
    retried: bool = False
    response: Response | None = None
    #: The fault the SP answered with, if it answered with one of its own.
    fault: DynasoarError | None = None

    @property
    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())
