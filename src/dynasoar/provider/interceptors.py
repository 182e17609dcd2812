"""The routing interceptor's steps before the relay, one concern each. The order they run in is
set in :mod:`dynasoar.provider.chain`."""

from __future__ import annotations

from collections.abc import Awaitable
from urllib.parse import unquote, urlsplit

from dynasoar import ns
from dynasoar.addresses import OwnAddresses
from dynasoar.consumer.host_client import normalize
from dynasoar.errors import (
    DestinationUnreachable,
    FailedAuthentication,
    InvalidRequest,
    InvalidSecurity,
    VersionMismatch,
)
from dynasoar.provider.catalog import Advertised
from dynasoar.provider.context import MessageContext
from dynasoar.provider.deployer import Deployer
from dynasoar.provider.reply_policy import ReplyDestinations
from dynasoar.provider.service_provider import ServiceProvider
from dynasoar.soap import addressing
from dynasoar.soap.addressing_rules import EndpointRules, check_request, soap_action_of
from dynasoar.soap.envelope import Envelope, HeadParser, SoapVersion, parse_envelope
from dynasoar.soap.mime import parse_content_type
from dynasoar.soap.security import Policy

SERVICES = "/services"
PREFERRED_HOSTS = f"{{{ns.DYN}}}PreferredHosts"
PREFERRED_HOST = f"{{{ns.DYN}}}Host"
CONSUMER = f"{{{ns.DYN}}}Consumer"
#: A consumer's name, as it says it (dyn:Consumer), at most this long.
MAX_CONSUMER_NAME = 256
#: A message this small that has fully arrived is parsed whole (PERFORMANCE.md: ~17 µs for
#: 1 KB); anything larger, or still arriving, only up to its Body.
SMALL_ENVELOPE = 64 * 1024
#: A message whose service requires signatures is read whole to check it: up to this size.
SIGNED_MESSAGE_LIMIT = 16 << 20
#: (Content-Type, SOAPAction) pairs whose meaning is kept (parsed again after a clear).
TRANSPORT_CACHE = 256
#: What a message's HTTP fields say: its SOAP action, SOAP version (None: not SOAP) and
#: whether it is MTOM (multipart/related).
Transport = tuple[str | None, SoapVersion | None, bool]


def service_path(name: str) -> str:
    return f"{SERVICES}/{name}"


class ReadEnvelopeHead:
    """Reads the body only up to the SOAP Body's first element: version and header blocks.
    MTOM messages pass through unparsed (the relay never looks inside bodies)."""

    phase = "read-head"

    def __init__(self) -> None:
        #: What a (Content-Type, SOAPAction) pair says: the same few pairs come with every
        #: message, so each is parsed once (a bounded cache: both are the consumer's text).
        self._transport: dict[tuple[str, str | None], Transport] = {}

    async def handle(self, ctx: MessageContext) -> None:
        headers = ctx.request.headers
        content_type = headers.get("content-type") or ""
        key = (content_type, headers.get("soapaction"))
        facts = self._transport.get(key)
        if facts is None:
            facts = _transport(*key)
            if len(self._transport) >= TRANSPORT_CACHE:
                self._transport.clear()
            self._transport[key] = facts
        ctx.soap_action, version, multipart = facts
        if multipart:
            ctx.version = version or SoapVersion.SOAP11
            return
        if version is None:
            raise InvalidRequest(
                f"Content-Type {content_type or '(none)'!r} is not SOAP: use text/xml (SOAP 1.1) "
                "or application/soap+xml (SOAP 1.2)"
            )
        ctx.version = version
        body = ctx.request.body
        if body.complete and body.buffered <= SMALL_ENVELOPE:
            # All of a small message is here: one parse is cheaper than a pull parser's events.
            ctx.prefix = await body.read_all(SMALL_ENVELOPE)
            envelope = parse_envelope(ctx.prefix)
        else:
            envelope = await self._read_head(ctx)
        if envelope.version is not version:
            # The HTTP binding names the SOAP version: the other envelope under that media type
            # is a VersionMismatch (SOAP 1.2 part 1, 5.4.7), not a message for the service.
            raise VersionMismatch(
                f"a SOAP {envelope.version.value} envelope sent as {version.media_type}: "
                "SOAP 1.1 is text/xml, SOAP 1.2 is application/soap+xml"
            )
        ctx.envelope = envelope
        ctx.version = envelope.version
        ctx.addressing = addressing.read_headers(envelope.header_blocks)

    async def _read_head(self, ctx: MessageContext) -> Envelope:
        parser = HeadParser()
        chunks: list[bytes] = []
        envelope = None
        while envelope is None:
            chunk = await ctx.request.body.read()
            if not chunk:
                envelope = parser.close()
                break
            chunks.append(chunk)
            envelope = parser.feed(chunk)
        ctx.prefix = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return envelope


def _transport(content_type: str, soapaction: str | None) -> Transport:
    """The SOAP action, version and framing (MTOM or not) a message's HTTP fields say."""
    parsed = parse_content_type(content_type) if content_type else None
    action = soap_action_of(content_type, soapaction)
    if parsed is not None and parsed.media_type == "multipart/related":
        return action, SoapVersion.from_media_type(parsed.get("start-info") or ""), True
    return action, SoapVersion.from_media_type(parsed.media_type) if parsed else None, False


class ResolveService:
    """Which advertised service the message is for: by URL, else wsa:To, else wsa:Action."""

    phase = "resolve"

    def __init__(self, provider: ServiceProvider) -> None:
        self._provider = provider

    def handle(self, ctx: MessageContext) -> None:
        path = ctx.request.path
        name = unquote(path[len(SERVICES) :].strip("/")) if path.startswith(SERVICES) else ""
        wsa = ctx.addressing
        if not name and wsa is not None and wsa.to:
            to_path = urlsplit(wsa.to).path
            if to_path.startswith(SERVICES + "/"):
                name = unquote(to_path[len(SERVICES) + 1 :].strip("/"))
        advertised = self._provider.advertised(name) if name else None
        if advertised is None and not name and wsa is not None and wsa.action:
            advertised = next(
                (a for a in self._provider.catalog() if wsa.action in a.contract.operations), None
            )
        if advertised is None:
            what = f"no service named {name!r}" if name else "no service for this message"
            raise DestinationUnreachable(
                f"{what} is advertised by this Service Provider", iri=ctx.base_url + path
            )
        ctx.service = advertised


class CheckAddressing:
    """The service's own WSDL decides: addressing required or optional, which actions exist.
    wsa:To must name this SP (its scheme, host, port: as it listens, or a configured public
    URL) and the service; a ReplyTo / FaultTo address must be one the operator allows."""

    phase = "addressing"

    def __init__(self, own: OwnAddresses, destinations: ReplyDestinations) -> None:
        self._own = own
        self._destinations = destinations
        self._rules: dict[tuple[str, str], EndpointRules] = {}

    def handle(self, ctx: MessageContext) -> None:
        if ctx.addressing is None or ctx.service is None:
            return
        check_request(ctx.addressing, ctx.soap_action, self._rules_for(ctx.service))

    def _rules_for(self, service: Advertised) -> EndpointRules:
        key = (service.record.name, service.record.sha256)
        rules = self._rules.get(key)
        if rules is None:
            own_path = service_path(service.record.name)
            contract = service.contract
            rules = EndpointRules(
                required=contract.addressing_required,
                actions=contract.operations,
                expects_reply=contract.expects_reply,
                is_destination=lambda to: self._own.names(to, own_path),
                reply_address=self._destinations.check,
            )
            self._rules[key] = rules
        return rules


class VerifyConsumer:
    """Services whose manifest requires signed messages get only messages signed by a consumer
    the SP trusts (WS-Security, checked before anything is deployed); the signer's certificate
    subject is who the message is from."""

    phase = "security"

    def __init__(self, security: Policy) -> None:
        self._security = security

    def handle(self, ctx: MessageContext) -> Awaitable[None] | None:
        if ctx.service is None or not ctx.service.record.require_signed:
            return None
        return self._verify(ctx)

    async def _verify(self, ctx: MessageContext) -> None:
        assert ctx.service is not None
        if self._security.trust is None:
            raise FailedAuthentication(
                f"{ctx.service.record.name} takes signed messages only, and this Service "
                "Provider trusts no consumer (start it with --consumer-trust)"
            )
        if ctx.envelope is None:
            raise InvalidSecurity("a signed message must be a SOAP envelope, not MTOM")
        if not ctx.request.body.at_eof:  # only the head was parsed: the signature covers all
            ctx.prefix += await ctx.request.body.read_all(SIGNED_MESSAGE_LIMIT)
            ctx.envelope = parse_envelope(ctx.prefix)
        verified = self._security.check(ctx.envelope.root)
        assert verified is not None
        ctx.consumer = verified.subject


class ReadPreferences:
    """The consumer's own criteria and word: a dyn:PreferredHosts header restricts where its
    service may be deployed (and which replicas may answer it); a dyn:Consumer header says
    who it is, for the usage book (a claim: a signed message's signer goes before it)."""

    phase = "preferences"

    def handle(self, ctx: MessageContext) -> None:
        if ctx.envelope is None:
            return
        for block in ctx.envelope.header_blocks:
            if block.tag == PREFERRED_HOSTS:
                hosts = {normalize(h.text or "") for h in block if h.tag == PREFERRED_HOST}
                hosts.discard("")
                if not hosts:
                    raise InvalidRequest("dyn:PreferredHosts names no dyn:Host")
                ctx.preferred = frozenset(hosts)
            elif block.tag == CONSUMER:
                name = " ".join((block.text or "").split())
                if not name or len(name) > MAX_CONSUMER_NAME:
                    raise InvalidRequest(
                        f"dyn:Consumer must name the consumer in 1 to {MAX_CONSUMER_NAME} "
                        "characters"
                    )
                ctx.claimed_consumer = name


class EnsureDeployment:
    """Resolve-or-deploy: the version the service's route picks for this message, then its
    least busy usable replica, or one deployed now (single-flight)."""

    phase = "deploy"

    def __init__(self, deployer: Deployer) -> None:
        self._deployer = deployer

    async def handle(self, ctx: MessageContext) -> None:
        assert ctx.service is not None
        ctx.record = ctx.service.pick()
        ctx.deployment, ctx.cold = await self._deployer.ensure(
            ctx.record, ctx.remaining, ctx.preferred, ctx.billed_to
        )
        if ctx.consumer is not None:
            self._deployer.load.count(ctx.deployment.id, ctx.consumer)
