"""A management port over HTTP: content type → envelope (plain or MTOM) → WS-Addressing rules →
spyne → reply headers. Used by the SP's and the HP's ports; serves their WSDL and schemas."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from dynasoar import ns
from dynasoar.deadlines import Deadlines
from dynasoar.errors import (
    WSSE,
    Busy,
    DynasoarError,
    InvalidRequest,
    MalformedMessage,
    MustUnderstand,
    ShuttingDown,
)
from dynasoar.http import Request, Response
from dynasoar.service.spyne_port import CallState, SpynePort
from dynasoar.soap import addressing
from dynasoar.soap.addressing_rules import EndpointRules, check_request, soap_action_of
from dynasoar.soap.envelope import (
    Envelope,
    SoapVersion,
    ensure_header,
    not_understood,
    parse_envelope,
    serialize,
)
from dynasoar.soap.faults import fault_reply
from dynasoar.soap.mime import parse_content_type
from dynasoar.soap.mtom import Attachment, MtomLimits, MtomMessage, read_mtom
from dynasoar.soap.security import Policy
from dynasoar.wsdl import ServiceContract, read_contract, rewrite_addresses

log = logging.getLogger(__name__)


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
        self._port = port
        self._executor = executor
        self._state = state
        self._slots = asyncio.Semaphore(config.max_concurrent_calls)
        self._wsdl = config.wsdl_file.read_bytes()
        self.contract: ServiceContract = read_contract(self._wsdl, str(config.wsdl_file))
        self._rules = EndpointRules(
            required=True,
            actions=self.contract.operations,
            expects_reply=self.contract.expects_reply,
            is_destination=self._is_destination,
        )

    def _check_must_understand(self, envelope: Envelope) -> None:
        understood = [ns.WSA, ns.WSA_2004, ns.DYN]
        if self.config.security.verifies:
            understood.append(WSSE)
        missed = not_understood(envelope, understood)
        if missed:
            names = ", ".join("{%s}%s" % q for q in missed)
            raise MustUnderstand(
                f"{names} must be understood, and this endpoint does not process it",
                not_understood=tuple(missed),
            )

    def _is_destination(self, to: str) -> bool:
        path = to.split("://", 1)[-1].partition("/")[2]
        return "/" + path.partition("?")[0] == self.config.path

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
        if self._slots.locked():
            busy = Busy(
                f"{self.config.path} is handling {self.config.max_concurrent_calls} calls "
                "already; retry shortly"
            )
            return fault_response(busy, _request_version(request), None)
        async with self._slots:
            scope = self._deadlines.scope(self.config.call_deadline)
            try:
                async with scope:
                    return await self._handle(request)
            except TimeoutError:
                if scope.reason is None:
                    late = f"{self.config.path}: the call took longer than its deadline"
                    return fault_response(Busy(late), _request_version(request), None)
                cut = ShuttingDown(f"{scope.reason} before this call was answered; send it again")
                return fault_response(cut, _request_version(request), None)

    async def _handle(self, request: Request) -> Response:
        content_type = request.headers.get("content-type") or ""
        media_type = content_type.partition(";")[0].strip().lower()
        # Until the envelope is read, its media type (for MTOM, the start-info's) says which
        # SOAP version a fault must be in.
        version = (
            SoapVersion.from_media_type(media_type)
            or _mtom_version(content_type)
            or SoapVersion.SOAP11
        )
        wsa: addressing.AddressingHeaders | None = None
        message: MtomMessage | None = None
        inline: list[Attachment] = []
        try:
            if media_type == "multipart/related":
                message = await read_mtom(
                    request.body, content_type, self.config.spool_dir, self.config.mtom_limits
                )
                envelope_bytes = message.root
                action_hint = message.action
            elif SoapVersion.from_media_type(media_type) is not None:
                envelope_bytes = await request.body.read_all(self.config.max_envelope_bytes)
                action_hint = soap_action_of(content_type, None)
            else:
                raise InvalidRequest(
                    f"Content-Type {media_type or '(none)'!r} is not SOAP: use text/xml (1.1), "
                    "application/soap+xml (1.2) or multipart/related (MTOM)"
                )
            envelope = parse_envelope(envelope_bytes)
            version = envelope.version
            wsa = addressing.read_headers(envelope.header_blocks)
            self._check_must_understand(envelope)
            verified = self.config.security.check(envelope.root)
            soap_action = soap_action_of(None, request.headers.get("soapaction")) or action_hint
            check_request(wsa, soap_action, self._rules)
            assert wsa.action is not None
            operation = self.contract.operations[wsa.action]
            if operation.input_element and envelope.body_qname != operation.input_element:
                raise InvalidRequest(
                    f"wsa:Action {wsa.action} names {operation.name}, but the Body holds "
                    f"{envelope.body_qname or 'nothing'}"
                )
            state = CallState(
                attachments=message.attachments if message else {},
                addressing=wsa,
                request=request,
                spool_dir=self.config.spool_dir,
                inline_spooled=inline,
                signer=verified.subject if verified is not None else None,
                **self._state(),
            )
            loop = asyncio.get_running_loop()
            reply = await loop.run_in_executor(
                self._executor, self._port.dispatch, envelope_bytes, version, state
            )
            if request.disconnected() and state.undo:
                # Nobody will hear of what was done: undo it (a Deploy nobody will use).
                log.warning("%s: the requester left before the reply; undoing", wsa.action)
                await loop.run_in_executor(self._executor, _run_all, state.undo)
            reply = _address_reply(reply, version, wsa, operation.output_action or "")
            reply = self.config.security.sign_envelope(reply)  # last: nothing may change after
            return Response(
                200, [("Content-Type", version.content_type(operation.output_action))], reply
            )
        except DynasoarError as exc:
            if not exc.sender:
                log.warning("%s %s: %s", self.config.path, type(exc).__name__, exc.reason)
            status, content_type, body = fault_reply(exc, version, wsa)
            return Response(
                status, [("Content-Type", content_type)], self.config.security.sign_envelope(body)
            )
        finally:
            if message is not None:
                message.close()
            for attachment in inline:
                attachment.delete()


def _run_all(steps: list[Callable[[], object]]) -> None:
    for step in steps:
        try:
            step()
        except Exception:
            log.exception("undoing a call whose requester left")


def _request_version(request: Request) -> SoapVersion:
    """The SOAP version a request's media type names (before its envelope is read)."""
    media_type = (request.headers.get("content-type") or "").partition(";")[0].strip()
    return SoapVersion.from_media_type(media_type) or SoapVersion.SOAP11


def _mtom_version(content_type: str) -> SoapVersion | None:
    try:
        start_info = parse_content_type(content_type).get("start-info") or ""
    except MalformedMessage:
        return None
    return SoapVersion.from_media_type(start_info.partition(";")[0])


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


def fault_response(
    error: DynasoarError, version: SoapVersion, wsa: addressing.AddressingHeaders | None
) -> Response:
    status, content_type, body = fault_reply(error, version, wsa)
    return Response(status, [("Content-Type", content_type)], body)


def _address_reply(
    reply: bytes, version: SoapVersion, wsa: addressing.AddressingHeaders, action: str
) -> bytes:
    try:
        root = parse_envelope(reply).root
    except DynasoarError as exc:
        raise MalformedMessage(f"the service produced an invalid reply: {exc.reason}") from exc
    header = ensure_header(root, version)
    header.extend(addressing.write_headers(addressing.reply_headers(wsa, action)))
    etree.cleanup_namespaces(root)
    return serialize(root)
