"""The Host Provider's SOAP operations (wsdl/HostProvider.wsdl), as a spyne service."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
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
from dynasoar.host.snapshot_store import SnapshotStore
from dynasoar.images import ImageRef
from dynasoar.service.attachments import attachment_of, incoming_images, incoming_snapshot
from dynasoar.service.snapshot_types import (
    SnapshotModel,
    snapshot_model,
    snapshot_stats,
)
from dynasoar.service.spyne_port import SpynePort
from dynasoar.service.types import (
    DeploymentLog,
    HostStatus,
    LogCursor,
    Required,
    deployment_log,
    host_terms,
    image_cache,
    log_request,
)
from dynasoar.soap.mtom_writer import OutgoingAttachment


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
        AnyXml(min_occurs=0),
        _returns=(Unicode, EndpointReferenceType),
        _out_variable_names=("deploymentId", "endpoint"),
    )
    def Deploy(  # type: ignore[no-untyped-def]
        ctx,
        service,
        version,
        kind,
        stateless,
        package,
        sha256,
        image,
        deploymentId,
        owner,
        snapshot,
    ):
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
            snapshot=incoming_snapshot(ctx.udc, snapshot) if snapshot is not None else None,
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
        status["snapshots"] = snapshot_stats(status["snapshots"])  # type: ignore[arg-type]
        status["terms"] = host_terms(status["terms"])  # type: ignore[arg-type]
        return HostStatus(**status)

    @rpc(
        Unicode(max_occurs="unbounded"),
        _returns=(Unicode(max_occurs="unbounded"), SnapshotModel.customize(max_occurs="unbounded")),
        _out_variable_names=("held", "snapshot"),
    )
    def QueryImages(ctx, sha256):  # type: ignore[no-untyped-def]
        host = _host(ctx)
        snapshots = host.snapshots.store.image_snapshots()
        return host.images.query(sha256 or []), [snapshot_model(s) for s in snapshots]

    @rpc(
        Required,
        Unicode(max_occurs="unbounded"),
        _returns=SnapshotModel,
        _out_variable_name="snapshot",
    )
    def GetSnapshot(ctx, sha256, have):  # type: ignore[no-untyped-def]
        """The snapshot, with the parts the requester does not ``have`` as attachments."""
        store = _host(ctx).snapshots.store
        snapshot = store.get(sha256 or "")
        if snapshot is None or not store.complete(snapshot):
            raise InvalidRequest(f"this host holds no snapshot sha256:{(sha256 or '')[:80]}")
        held = {digest.strip().lower() for digest in have or []}
        contents = {}
        for number, part in enumerate(snapshot.parts):
            if part.sha256 in held or part.sha256 in contents:
                continue
            cid = f"part{number}@dynasoar"
            ctx.udc.outgoing.append(
                OutgoingAttachment(cid, "application/octet-stream", _spooled(ctx, store, part))
            )
            contents[part.sha256] = cid
        return snapshot_model(snapshot, contents)

    @rpc(Required, _returns=SnapshotModel, _out_variable_name="snapshot")
    def SaveState(ctx, deploymentId):  # type: ignore[no-untyped-def]
        """Pause a VM deployment and save it, to move it: its state's descriptor (fetch the
        parts with GetSnapshot). It stays paused until Resume or Undeploy."""
        return snapshot_model(_host(ctx).save_state(deploymentId))

    @rpc(Required, _returns=Boolean, _out_variable_name="resumed")
    def Resume(ctx, deploymentId):  # type: ignore[no-untyped-def]
        return _host(ctx).resume(deploymentId)

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


def _spooled(ctx: Any, store: SnapshotStore, part: ImageRef) -> Path:
    """A link to a cached part in the call's spool: sent from there, deleted once sent, so
    that an eviction meanwhile cannot cut the reply short."""
    link = Path(ctx.udc.spool_dir) / f"reply-{uuid.uuid4().hex}"
    try:
        os.link(store.cache.path(part.sha256), link)
    except OSError:
        shutil.copyfile(store.cache.path(part.sha256), link)
    return link


def host_port() -> SpynePort:
    return SpynePort([HostProviderService], tns=ns.DYN_HP, name="HostProvider")
