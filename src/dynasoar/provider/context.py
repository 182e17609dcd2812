"""Per-message state of the routing interceptor: one :class:`MessageContext` per request."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from dynasoar.errors import DynasoarError
from dynasoar.http import Request, Response
from dynasoar.provider.catalog import Advertised
from dynasoar.provider.registry import DeploymentRecord, ServiceRecord
from dynasoar.soap.addressing import AddressingHeaders
from dynasoar.soap.envelope import Envelope, SoapVersion


@dataclass(slots=True)
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
    #: The version of the service this message goes to (its route's choice).
    record: ServiceRecord | None = None
    #: Who signed the message (certificate subject), for services requiring signatures.
    consumer: str | None = None
    #: Who the message says it is from (its dyn:Consumer header): a claim, not a proof.
    claimed_consumer: str | None = None
    #: The consumer's dyn:PreferredHosts, when it sent them.
    preferred: frozenset[str] | None = None
    deployment: DeploymentRecord | None = None
    cold: bool = False
    #: The relay already sent this message again after losing a deployment.
    retried: bool = False
    response: Response | None = None
    #: Accepted for an asynchronous reply (202 sent): its row in the reply store.
    job: str | None = None
    detached: bool = False
    #: The fault the SP answered with, if it answered with one of its own.
    fault: DynasoarError | None = None

    @property
    def billed_to(self) -> str:
        """Who the message is counted for: its signer, else who it claims to be, else its
        client's address."""
        if self.consumer:
            return self.consumer
        if self.claimed_consumer:
            return self.claimed_consumer
        client = self.request.client
        return client[0] if client else "(unknown)"

    @property
    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())
