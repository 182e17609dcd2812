"""The Service Provider's management operations (wsdl/ServiceProvider.wsdl), as a spyne service.

Methods run on worker threads; anything touching the SP's event loop (deploying, asking hosts)
goes through ``ctx.udc.run``, which waits for the coroutine on the loop with a deadline.
"""

from __future__ import annotations

from typing import Any

from spyne import AnyUri, AnyXml, Boolean, Date, Double, Integer, ServiceBase, Unicode, rpc

from dynasoar import ns
from dynasoar.errors import InvalidRequest
from dynasoar.provider.port_types import (
    DeploymentInfo,
    HostInfo,
    MoveInfo,
    RolloutInfo,
    ServiceInfo,
    TrafficShare,
    UsageRow,
    deployment_info,
    host_figures,
    host_info,
    move_info,
    rollout_info,
    service_info,
    usage_row,
)
from dynasoar.service.attachments import attachment_of, incoming_images
from dynasoar.service.spyne_port import SpynePort
from dynasoar.service.types import (
    DeploymentLog,
    HostStatus,
    LogCursor,
    Required,
    deployment_log,
    log_request,
)


def _sp(ctx: Any) -> Any:
    return ctx.udc.provider


def _service_info(ctx: Any, record: Any) -> ServiceInfo:
    registry = _sp(ctx).registry
    library = _sp(ctx).deployer.shipper.snapshots
    snapshot = library.of(record) if library is not None else None
    return service_info(
        record,
        len(registry.deployments_of(record.name)),
        registry.route(record.name),
        [v.version for v in registry.versions(record.name)],
        (snapshot.digest, snapshot.size) if snapshot is not None else None,
    )


class ServiceProviderService(ServiceBase):  # type: ignore[misc]
    @rpc(
        AnyXml,
        AnyXml(max_occurs="unbounded"),
        Boolean(min_occurs=0),
        _returns=(ServiceInfo, RolloutInfo),
        _out_variable_names=("service", "rollout"),
    )
    def Publish(ctx, package, image, rollout):  # type: ignore[no-untyped-def]
        if package is None:
            raise InvalidRequest("Publish needs the package (an MTOM attachment)")
        images = incoming_images(ctx.udc, image)
        record = _sp(ctx).publish(attachment_of(ctx.udc, package), images)
        outcome = ctx.udc.run(_sp(ctx).rollouts.published(record, rollout is not False))
        return _service_info(ctx, record), rollout_info(outcome)

    @rpc(
        Required,
        Unicode(min_occurs=0),
        Boolean(min_occurs=0),
        _returns=Unicode(max_occurs="unbounded"),
        _out_variable_name="removed",
    )
    def Unpublish(ctx, name, version, undeploy):  # type: ignore[no-untyped-def]
        return ctx.udc.run(_sp(ctx).rollouts.unpublish(name, version or None, bool(undeploy)))

    @rpc(
        Required,
        Required,
        Boolean(min_occurs=0),
        _returns=RolloutInfo,
        _out_variable_name="rollout",
    )
    def Rollout(ctx, name, version, force):  # type: ignore[no-untyped-def]
        return rollout_info(ctx.udc.run(_sp(ctx).rollouts.rollout(name, version, bool(force))))

    @rpc(Required, _returns=RolloutInfo, _out_variable_name="rollout")
    def Rollback(ctx, name):  # type: ignore[no-untyped-def]
        return rollout_info(ctx.udc.run(_sp(ctx).rollouts.rollback(name)))

    @rpc(
        Required,
        TrafficShare.customize(min_occurs=1, max_occurs="unbounded"),
        _returns=RolloutInfo,
        _out_variable_name="rollout",
    )
    def SetTraffic(ctx, name, share):  # type: ignore[no-untyped-def]
        given = [(s.version or "", s.percent if s.percent is not None else -1) for s in share or []]
        return rollout_info(ctx.udc.run(_sp(ctx).rollouts.split(name, given)))

    @rpc(Required, AnyUri(min_occurs=0), _returns=DeploymentInfo, _out_variable_name="deployment")
    def Deploy(ctx, name, host):  # type: ignore[no-untyped-def]
        record = ctx.udc.run(_sp(ctx).deploy(name, host or None))
        return deployment_info(record, _sp(ctx).deployer.load)

    @rpc(
        Required, AnyUri(min_occurs=1, nillable=False), _returns=MoveInfo, _out_variable_name="move"
    )
    def Move(ctx, name, host):  # type: ignore[no-untyped-def]
        return move_info(ctx.udc.run(_sp(ctx).move(name, host)))

    @rpc(AnyUri(min_occurs=1, nillable=False), _returns=Integer, _out_variable_name="moved")
    def DrainHost(ctx, address):  # type: ignore[no-untyped-def]
        return ctx.udc.run(_sp(ctx).drain(address, ctx.udc.drain_timeout))

    @rpc(Required, AnyUri(min_occurs=0), _returns=Integer, _out_variable_name="undeployed")
    def Undeploy(ctx, name, host):  # type: ignore[no-untyped-def]
        return ctx.udc.run(_sp(ctx).undeploy(name, host or None))

    @rpc(_returns=ServiceInfo.customize(max_occurs="unbounded"), _out_variable_name="service")
    def ListServices(ctx):  # type: ignore[no-untyped-def]
        return [_service_info(ctx, s) for s in _sp(ctx).registry.services()]

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
        # From the figures the SP keeps (heartbeats, live checks): no host is asked.
        return [host_info(h) for h in ctx.udc.run(_sp(ctx).list_hosts())]

    @rpc(
        AnyUri(min_occurs=1, nillable=False),
        Double(min_occurs=0),
        HostStatus.customize(min_occurs=0),
        _returns=(HostInfo, Double),
        _out_variable_names=("host", "heartbeat"),
    )
    def RegisterHost(ctx, address, heartbeat, status):  # type: ignore[no-untyped-def]
        # A host's own figures spare the SP a Status call, if they come from a host it trusts.
        figures = host_figures(address, status) if ctx.udc.hosts_trusted(ctx.udc.signer) else None
        record, interval = ctx.udc.run(_sp(ctx).register_host(address, heartbeat, figures))
        return host_info(record), interval

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

    @rpc(
        Unicode(min_occurs=0),
        Date(min_occurs=0),
        _returns=UsageRow.customize(max_occurs="unbounded"),
        _out_variable_name="usage",
    )
    def GetUsage(ctx, consumer, since):  # type: ignore[no-untyped-def]
        # What the hosts consumed until now: only those with figures not yet taken are asked.
        ctx.udc.run(_owed_usage(ctx.udc.usage))
        return [usage_row(row) for row in ctx.udc.usage.bill(consumer or None, since)]


async def _owed_usage(usage: Any) -> None:
    """On the loop, where the deployments and the hosts' states change."""
    await usage.poll(usage.owed())


def provider_port() -> SpynePort:
    return SpynePort([ServiceProviderService], tns=ns.DYN_SP, name="ServiceProvider")
