"""spyne models of VM snapshots on the ports (dyn:Snapshot, dyn:SnapshotStats in dynasoar.xsd),
and how a descriptor becomes one. Snapshots are read off requests with
:func:`dynasoar.snapshots.read_snapshot` (one codec for both directions' reading)."""

from __future__ import annotations

from spyne import AnyXml, Boolean, ComplexModel, Integer, Long, Unicode

from dynasoar import ns
from dynasoar.images import ImageRef
from dynasoar.snapshots import Snapshot, SnapshotStats
from dynasoar.soap.xop import xop_include


class SnapshotImage(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    _type_info = [("name", Unicode), ("sha256", Unicode)]


class SnapshotPart(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    _type_info = [("name", Unicode), ("sha256", Unicode), ("size", Long), ("content", AnyXml)]


class SnapshotModel(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    __type_name__ = "Snapshot"
    _type_info = [
        ("sha256", Unicode),
        ("kind", Unicode),
        ("service", Unicode),
        ("version", Unicode),
        ("package", Unicode),
        ("image", SnapshotImage.customize(max_occurs="unbounded")),
        ("machine", Unicode),
        ("cpu", Unicode),
        ("accel", Unicode),
        ("memoryMiB", Integer),
        ("vcpus", Integer),
        ("memory", SnapshotPart),
        ("layer", SnapshotPart.customize(max_occurs="unbounded")),
        ("taken", Unicode),
        ("required", Boolean(min_occurs=0)),
    ]


class SnapshotStatsModel(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    __type_name__ = "SnapshotStats"
    _type_info = [
        ("held", Integer),
        ("bytes", Long),
        ("taken", Integer),
        ("restored", Integer),
        ("fallbacks", Integer),
    ]


def snapshot_model(snapshot: Snapshot, contents: dict[str, str] | None = None) -> SnapshotModel:
    """``contents``: a part's digest -> the Content-ID of the attachment that carries it."""

    def part(ref: ImageRef) -> SnapshotPart:
        cid = (contents or {}).get(ref.sha256)
        return SnapshotPart(
            name=ref.name,
            sha256=ref.sha256,
            size=ref.size,
            content=xop_include(cid) if cid is not None else None,
        )

    return SnapshotModel(
        sha256=snapshot.digest,
        kind=snapshot.kind,
        service=snapshot.service,
        version=snapshot.version,
        package=snapshot.package,
        image=[SnapshotImage(name=n, sha256=s) for n, s in snapshot.images],
        machine=snapshot.platform.machine,
        cpu=snapshot.platform.cpu,
        accel=snapshot.platform.accel,
        memoryMiB=snapshot.memory_mib,
        vcpus=snapshot.vcpus,
        memory=part(snapshot.memory),
        layer=[part(layer) for layer in snapshot.layers],
        taken=snapshot.taken,
    )


def snapshot_stats(stats: SnapshotStats | None) -> SnapshotStatsModel | None:
    if stats is None:
        return None
    return SnapshotStatsModel(
        held=stats.held,
        bytes=stats.bytes,
        taken=stats.taken,
        restored=stats.restored,
        fallbacks=stats.fallbacks,
    )
