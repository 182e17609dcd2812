"""A management port over HTTP: serves its WSDL and schemas, and runs each SOAP call through
the port's processing chain (:mod:`dynasoar.service.port_chain`). Used by the SP's and the
HP's ports."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynasoar.addresses import OwnAddresses
from dynasoar.deadlines import Deadlines
from dynasoar.errors import Busy, DynasoarError, ShuttingDown
from dynasoar.http import Request, Response
from dynasoar.service.port_chain import build_port_chain
from dynasoar.service.spyne_port import SpynePort
from dynasoar.soap.addressing_rules import EndpointRules
from dynasoar.soap.envelope import SoapVersion
from dynasoar.soap.faults import fault_reply
from dynasoar.soap.mtom import MtomLimits
from dynasoar.soap.security import Policy
from dynasoar.wsdl import ServiceContract, read_contract, rewrite_addresses


@dataclass
class EndpointConfig:
    path: str
    wsdl_file: Path
    spool_dir: Path
    max_envelope_bytes: int = 4 << 20
    mtom_limits: MtomLimits = field(default_factory=MtomLimits)
    #: Signing replies, requiring signed requests (when it has a trust store).
    security: Policy = field(default_factory=Policy)
    #: Calls being read or run at once; more are refused with dyn:Busy, not queued unbounded.
    max_concurrent_calls: int = 32
    #: The URLs this actor answers to: a message's wsa:To must name one of them.
    own: OwnAddresses = field(default_factory=OwnAddresses)
    #: The HTTP status of a SOAP 1.2 Sender fault (400, or 500 for clients that want it).
    sender_status: int = 400
    #: The longest a call may take (uploads of big VM images included).
    call_deadline: float = 24 * 3600.0


class ManagementEndpoint:
    """One SOAP port with WS-Addressing required, its operations implemented with spyne."""

    def __init__(
        self,
        port: SpynePort,
        config: EndpointConfig,
        executor: Executor,
        state: Callable[[], dict[str, Any]],
        deadlines: Deadlines | None = None,
    ) -> None:
        self.config = config
        #: Brought forward when the actor stops: calls still running then get dyn:ShuttingDown.
        self._deadlines = deadlines or Deadlines()
        self._wsdl = config.wsdl_file.read_bytes()
        self.contract: ServiceContract = read_contract(self._wsdl, str(config.wsdl_file))
        rules = EndpointRules(
            required=True,
            actions=self.contract.operations,
            expects_reply=self.contract.expects_reply,
            is_destination=lambda to: config.own.names(to, config.path),
        )
        self._chain = build_port_chain(
            path=config.path,
            contract=self.contract,
            rules=rules,
            port=port,
            executor=executor,
            state=state,
            spool_dir=config.spool_dir,
            max_envelope_bytes=config.max_envelope_bytes,
            mtom_limits=config.mtom_limits,
            security=config.security,
            max_concurrent_calls=config.max_concurrent_calls,
            sender_status=config.sender_status,
        )

    # -- GET: contract documents ---------------------------------------------------------

    def wsdl(self, base_url: str) -> Response:
        body = rewrite_addresses(self._wsdl, base_url + self.config.path)
        return Response(200, [("Content-Type", "text/xml; charset=utf-8")], body)

    def schema(self, name: str) -> Response | None:
        """A schema file next to the WSDL (imported with a relative schemaLocation)."""
        directory = self.config.wsdl_file.parent
        candidates = {p.name: p for p in directory.glob("*.xsd")}
        path = candidates.get(name)
        if path is None:
            return None
        return Response(200, [("Content-Type", "text/xml; charset=utf-8")], path.read_bytes())

    # -- POST: one SOAP exchange ------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        scope = self._deadlines.scope(self.config.call_deadline)
        try:
            async with scope:
                return await self._chain(request)
        except TimeoutError:
            error: DynasoarError = (
                ShuttingDown(f"{scope.reason} before this call was answered; send it again")
                if scope.reason is not None
                else Busy(f"{self.config.path}: the call took longer than its deadline")
            )
            media_type = (request.headers.get("content-type") or "").partition(";")[0].strip()
            version = SoapVersion.from_media_type(media_type) or SoapVersion.SOAP11
            status, content_type, body = fault_reply(error, version, None)
            return Response(status, [("Content-Type", content_type)], body)


def upload_limits(max_upload_bytes: int) -> MtomLimits:
    """MTOM limits for a port taking packages and VM images of up to ``max_upload_bytes``."""
    return MtomLimits(
        max_attachment_bytes=max_upload_bytes,
        max_total_attachment_bytes=max_upload_bytes,
        max_body_bytes=max_upload_bytes + (8 << 20),
    )


def fresh_spool(directory: Path) -> None:
    """The spool for incoming attachments, emptied of what a previous run left behind."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, mode=0o700)
