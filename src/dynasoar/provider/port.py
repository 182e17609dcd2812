"""The Service Provider's management operations (wsdl/ServiceProvider.wsdl), as a spyne service.

Methods run on worker threads; anything touching the SP's event loop (deploying, asking hosts)
goes through ``ctx.udc.run``, which waits for the coroutine on the loop with a deadline.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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
from dynasoar.provider.load import LoadTracker
from dynasoar.provider.registry import DeploymentRecord, HostRecord, ServiceRecord
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


class ServiceInfo(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    name = Unicode
    version = Unicode
    kind = Unicode
    stateless = Boolean
    sha256 = Unicode
    size = Long
    published = DateTime
    deployments = Integer


class ConsumerCount(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    subject = Unicode
    messages = Long


class DeploymentInfo(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    id = Unicode
    service = Unicode
    host = AnyUri
    endpoint = AnyUri
    state = Unicode
    created = DateTime
    outstanding = Integer
    lastUsed = DateTime
    deployedFor = Unicode
    consumer = ConsumerCount.customize(max_occurs="unbounded")
    reason = Unicode
    changed = DateTime
    version = Unicode
    sha256 = Unicode


class HostInfo(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    address = AnyUri
    state = Unicode
    capacity = Integer
    deployments = Integer
    load = Double
    cache = ImageCache
    terms = HostTermsModel


def service_info(s: ServiceRecord, deployments: int) -> ServiceInfo:
    return ServiceInfo(
        name=s.name,
        version=s.version,
        kind=s.kind,
        stateless=s.stateless,
        sha256=s.sha256,
        size=s.size,
        published=s.published,
        deployments=deployments,
    )


def deployment_info(d: DeploymentRecord, load: LoadTracker) -> DeploymentInfo:
    return DeploymentInfo(
        id=d.id,
        service=d.service,
        host=d.host,
        endpoint=d.endpoint,
        state=d.state,
        created=d.created,
        outstanding=load.outstanding(d.id),
        lastUsed=datetime.now(UTC) - timedelta(seconds=load.idle_for(d.id)),
        deployedFor=d.deployed_for,
        consumer=[ConsumerCount(subject=s, messages=n) for s, n in load.consumers(d.id)],
        reason=d.reason,
        changed=d.changed,
        version=d.version,
        sha256=d.sha256,
    )


def host_info(h: HostRecord) -> HostInfo:
    return HostInfo(
        address=h.address,
        state=h.state,
        capacity=h.capacity,
        deployments=h.deployments,
        load=h.load,
        cache=image_cache(h.cache),
        terms=host_terms(h.terms),
    )


def _sp(ctx: Any) -> Any:
    return ctx.udc.provider


class ServiceProviderService(ServiceBase):  # type: ignore[misc]
    @rpc(AnyXml, AnyXml(max_occurs="unbounded"), _returns=ServiceInfo, _out_variable_name="service")
    def Publish(ctx, package, image):  # type: ignore[no-untyped-def]
        if package is None:
            raise InvalidRequest("Publish needs the package (an MTOM attachment)")
        images = incoming_images(ctx.udc, image)
        record = _sp(ctx).publish(attachment_of(ctx.udc, package), images)
        return service_info(record, len(_sp(ctx).registry.deployments_of(record.name)))

    @rpc(Required, AnyUri(min_occurs=0), _returns=DeploymentInfo, _out_variable_name="deployment")
    def Deploy(ctx, name, host):  # type: ignore[no-untyped-def]
        record = ctx.udc.run(_sp(ctx).deploy(name, host or None))
        return deployment_info(record, _sp(ctx).deployer.load)

    @rpc(Required, AnyUri(min_occurs=0), _returns=Integer, _out_variable_name="undeployed")
    def Undeploy(ctx, name, host):  # type: ignore[no-untyped-def]
        return ctx.udc.run(_sp(ctx).undeploy(name, host or None))

    @rpc(_returns=ServiceInfo.customize(max_occurs="unbounded"), _out_variable_name="service")
    def ListServices(ctx):  # type: ignore[no-untyped-def]
        registry = _sp(ctx).registry
        return [service_info(s, len(registry.deployments_of(s.name))) for s in registry.services()]

    @rpc(
        Unicode(min_occurs=0),
        _returns=DeploymentInfo.customize(max_occurs="unbounded"),
        _out_variable_name="deployment",
    )
    def ListDeployments(ctx, name):  # type: ignore[no-untyped-def]
        records = _sp(ctx).registry.deployments()
        load = _sp(ctx).deployer.load
        return [deployment_info(d, load) for d in records if not name or d.service == name]

    @rpc(_returns=HostInfo.customize(max_occurs="unbounded"), _out_variable_name="host")
    def ListHosts(ctx):  # type: ignore[no-untyped-def]
        return [host_info(h) for h in ctx.udc.run(_sp(ctx).refresh_hosts())]

    @rpc(
        AnyUri(min_occurs=1, nillable=False),
        Double(min_occurs=0),
        _returns=HostInfo,
        _out_variable_name="host",
    )
    def RegisterHost(ctx, address, heartbeat):  # type: ignore[no-untyped-def]
        return host_info(ctx.udc.run(_sp(ctx).register_host(address, heartbeat)))

    @rpc(
        AnyUri(min_occurs=1, nillable=False),
        Boolean(min_occurs=0),
        _returns=Integer,
        _out_variable_name="moved",
    )
    def DeregisterHost(ctx, address, drain):  # type: ignore[no-untyped-def]
        return ctx.udc.run(_sp(ctx).deregister_host(address, bool(drain), ctx.udc.drain_timeout))

    @rpc(
        Unicode(max_occurs="unbounded"),
        _returns=Unicode(max_occurs="unbounded"),
        _out_variable_name="held",
    )
    def QueryImages(ctx, sha256):  # type: ignore[no-untyped-def]
        return _sp(ctx).repository.images.query(sha256 or [])

    @rpc(
        Required,
        Unicode(min_occurs=0),
        Integer(min_occurs=0),
        LogCursor.customize(max_occurs="unbounded"),
        _returns=(
            DeploymentLog.customize(max_occurs="unbounded"),
            AnyUri(max_occurs="unbounded"),
        ),
        _out_variable_names=("log", "unreachable"),
    )
    def GetLogs(ctx, name, deployment, tail, cursor):  # type: ignore[no-untyped-def]
        cursors = log_request(tail, cursor)
        gathered = ctx.udc.run(ctx.udc.logs.gather(name, deployment or None, tail, cursors))
        return [deployment_log(chunk) for chunk in gathered.logs], gathered.unreachable


def provider_port() -> SpynePort:
    return SpynePort([ServiceProviderService], tns=ns.DYN_SP, name="ServiceProvider")
