"""The Host Provider's SOAP operations (wsdl/HostProvider.wsdl), as a spyne service."""

from __future__ import annotations

from typing import Any

from spyne import (
    AnyUri,
    AnyXml,
    Boolean,
    ComplexModel,
    DateTime,
    Double,
    Integer,
    Long,
    ServiceBase,
    Unicode,
    rpc,
)

from dynasoar import ns
from dynasoar.errors import InvalidRequest
from dynasoar.host.hosting import DeployRequest, HostProvider
from dynasoar.service.attachments import attachment_of, incoming_images
from dynasoar.service.spyne_port import SpynePort
from dynasoar.service.types import (
    DeploymentLog,
    HostTermsModel,
    ImageCache,
    LogCursor,
    Required,
    deployment_log,
    host_terms,
    image_cache,
    log_request,
)


class EndpointReferenceType(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.WSA
    __type_name__ = "EndpointReferenceType"
    Address = AnyUri


class HostedDeployment(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    id = Unicode
    service = Unicode
    version = Unicode
    kind = Unicode
    endpoint = AnyUri
    state = Unicode
    started = DateTime
    owner = Unicode


class DeploymentUsage(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    id = Unicode
    service = Unicode
    version = Unicode
    state = Unicode
    cpuSeconds = Double
    memoryGiBSeconds = Double
    imageBytes = Long
    started = DateTime
    ended = DateTime


class HostStatus(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    address = AnyUri
    backend = Unicode
    capacity = Integer
    deployments = Integer
    load = Double
    version = Unicode
    cache = ImageCache
    terms = HostTermsModel


def _host(ctx: Any) -> HostProvider:
    host = ctx.udc.host
    assert isinstance(host, HostProvider)
    return host


class HostProviderService(ServiceBase):  # type: ignore[misc]
    @rpc(
        Required,
        Required,
        Required,
        Boolean,
        AnyXml,
        Required,
        AnyXml(max_occurs="unbounded"),
        Unicode(min_occurs=0),
        Unicode(min_occurs=0),
        _returns=(Unicode, EndpointReferenceType),
        _out_variable_names=("deploymentId", "endpoint"),
    )
    def Deploy(ctx, service, version, kind, stateless, package, sha256, image, deploymentId, owner):  # type: ignore[no-untyped-def]
        if package is None:
            raise InvalidRequest("Deploy needs the package (an MTOM attachment)")
        attachment = attachment_of(ctx.udc, package)
        images = tuple(incoming_images(ctx.udc, image))
        request = DeployRequest(
            service,
            version,
            kind,
            bool(stateless),
            sha256 or "",
            images,
            deployment_id=deploymentId or None,
            owner=owner or None,
        )
        host = _host(ctx)
        hosted = host.deploy(request, attachment)
        # If the requester is gone before it hears of this deployment, nobody will ever use or
        # undeploy it: the endpoint undoes it (see service/endpoint.py).
        ctx.udc.undo.append(lambda: host.undeploy(hosted.id, grace=1.0))
        return hosted.id, EndpointReferenceType(Address=hosted.endpoint)

    @rpc(Required, _returns=Boolean, _out_variable_name="undeployed")
    def Undeploy(ctx, deploymentId):  # type: ignore[no-untyped-def]
        return _host(ctx).undeploy(deploymentId)

    @rpc(
        _returns=HostedDeployment.customize(max_occurs="unbounded"), _out_variable_name="deployment"
    )
    def List(ctx):  # type: ignore[no-untyped-def]
        return [
            HostedDeployment(
                id=h.id,
                service=h.service,
                version=h.version,
                kind=h.kind,
                endpoint=h.endpoint,
                state=h.state,
                started=h.started,
                owner=h.owner,
            )
            for h in [*_host(ctx).hosted(), *_host(ctx).starting()]
        ]

    @rpc(_returns=HostStatus, _out_variable_name="status")
    def Status(ctx):  # type: ignore[no-untyped-def]
        status = _host(ctx).status()
        status["cache"] = image_cache(status["cache"])  # type: ignore[arg-type]
        status["terms"] = host_terms(status["terms"])  # type: ignore[arg-type]
        return HostStatus(**status)

    @rpc(
        Unicode(max_occurs="unbounded"),
        _returns=Unicode(max_occurs="unbounded"),
        _out_variable_name="held",
    )
    def QueryImages(ctx, sha256):  # type: ignore[no-untyped-def]
        return _host(ctx).images.query(sha256 or [])

    @rpc(
        _returns=DeploymentUsage.customize(max_occurs="unbounded"),
        _out_variable_name="deployment",
    )
    def GetUsage(ctx):  # type: ignore[no-untyped-def]
        return [
            DeploymentUsage(
                id=c.id,
                service=c.service,
                version=c.version,
                state=c.state,
                cpuSeconds=round(c.cpu_seconds, 3),
                memoryGiBSeconds=round(c.memory_gib_seconds, 6),
                imageBytes=c.image_bytes,
                started=c.started,
                ended=c.ended,
            )
            for c in _host(ctx).meter.all()
        ]

    @rpc(
        Required,
        Unicode(min_occurs=0),
        Integer(min_occurs=0),
        LogCursor.customize(max_occurs="unbounded"),
        _returns=DeploymentLog.customize(max_occurs="unbounded"),
        _out_variable_name="log",
    )
    def GetLogs(ctx, service, deployment, tail, cursor):  # type: ignore[no-untyped-def]
        cursors = log_request(tail, cursor)
        chunks = _host(ctx).logs.read(service, deployment or None, tail, cursors)
        return [deployment_log(chunk) for chunk in chunks]


def host_port() -> SpynePort:
    return SpynePort([HostProviderService], tns=ns.DYN_HP, name="HostProvider")
