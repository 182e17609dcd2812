"""Snapshot start, end to end with real libvirt + QEMU: a VM package's first boot on a host is
saved; later cold deploys restore copies of it (each on its own port and overlay) instead of
booting, and boot when a restore fails; a snapshot travels by digest to a host that never
booted the image; one taken on another platform, or cut short or altered on the way, is refused
at upload; a manifest can opt out."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dynasoar.consumer import direct
from dynasoar.consumer.call import call
from dynasoar.consumer.host_client import ShippedSnapshot
from dynasoar.errors import DeploymentFailed, SnapshotIncompatible
from dynasoar.snapshots import Platform

from .conftest import Cluster, wait_for
from .vmhosts import (
    COUNTER,
    FULL,
    echo,
    fetch_snapshot,
    hp_port,
    listed_snapshots,
    require_vm_host,
    ship,
    snapshot_stats,
    wait_for_snapshot,
)

MakeCluster = Callable[..., Cluster]
LIBVIRT = ["--backend", "libvirt"]


@pytest.fixture(autouse=True)
def _vm_host() -> None:
    require_vm_host()


def test_a_cold_deploy_after_the_first_restores_the_snapshot(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(hps=[LIBVIRT])
    hp = cluster.hps[0].url
    cluster.client.publish(FULL)
    wsdl = cluster.service_url("VmEcho") + "?wsdl"
    first = call(wsdl, "Echo", ["text=booted"])
    assert (first.value, first.headers["x-dynasoar-cold"]) == ("booted", "1")
    snapshot = wait_for_snapshot(hp)
    assert (snapshot.kind, snapshot.service, snapshot.version) == ("image", "VmEcho", "1.0")
    assert snapshot.machine.startswith("pc-") and snapshot.memory.size > 0
    assert len(snapshot.layer) == 1  # the disk as the guest had written it, frozen
    assert snapshot_stats(hp).taken == 1

    (booted,) = cluster.client.call("ListDeployments")
    assert cluster.client.call("Undeploy", name="VmEcho") == 1
    second = call(wsdl, "Echo", ["text=restored"])
    assert (second.value, second.headers["x-dynasoar-cold"]) == ("restored", "1")
    stats = snapshot_stats(hp)
    assert (stats.taken, stats.restored, stats.fallbacks) == (1, 1, 0)
    # The guest did not boot again: its console shows no boot, only the first one's does.
    logs = {
        log.deployment: log.text or "" for log in cluster.client.call("GetLogs", name="VmEcho").log
    }
    restored = second.headers["x-dynasoar-deployment"]
    assert "dynasoar-guest: serving" in logs[booted.id]
    assert "dynasoar-guest" not in logs[restored]

    # The SP learnt the snapshot; dynasoar status shows it and the host's counts.
    wait_for(
        lambda: cluster.client.call("ListServices")[0].snapshot == snapshot.sha256,
        timeout=60,
        what="the SP to fetch the snapshot",
    )
    def status() -> str:
        return subprocess.run(
            [sys.executable, "-m", "dynasoar", "status", "--sp", cluster.sp.url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    # The host's counts as it last reported them: the restore's with its next heartbeat (the
    # SP lists hosts from what it heard, asking none of them).
    wait_for(
        lambda: "1 held, 1 taken, 1 restored, 0 booted instead" in status(),
        timeout=30,
        what="the host's heartbeat with the restore counted",
    )
    assert snapshot.sha256[:12] in status()
    document = json.loads(
        subprocess.run(
            [sys.executable, "-m", "dynasoar", "status", "--json", "--sp", cluster.sp.url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    (service,) = document["services"]
    assert service["snapshot"]["sha256"] == snapshot.sha256 and service["snapshot"]["bytes"] > 0
    (host,) = document["hosts"]
    assert {k: host["snapshots"][k] for k in ("held", "taken", "restored", "fallbacks")} == {
        "held": 1,
        "taken": 1,
        "restored": 1,
        "fallbacks": 0,
    }


def test_an_sp_on_a_shared_registry_keeps_the_snapshot(
    make_cluster: MakeCluster, request: pytest.FixtureRequest
) -> None:
    # The snapshot's record goes to the registry the SPs share (PostgreSQL): its SQL must be
    # both databases'.
    pg_url = request.getfixturevalue("pg_url")
    cluster = make_cluster(sp_args=["--registry", pg_url], hps=[LIBVIRT])
    hp = cluster.hps[0].url
    cluster.client.publish(FULL)
    first = call(cluster.service_url("VmEcho") + "?wsdl", "Echo", ["text=booted"])
    assert first.headers["x-dynasoar-cold"] == "1"
    snapshot = wait_for_snapshot(hp)
    wait_for(
        lambda: cluster.client.call("ListServices")[0].snapshot == snapshot.sha256,
        timeout=60,
        what="the SP to fetch the snapshot and record it in the shared registry",
    )
    assert "Task exception was never retrieved" not in cluster.sp.log()


def test_a_stateful_guest_restores_as_it_was_before_any_message(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(hps=[LIBVIRT])
    cluster.client.publish(COUNTER)
    wsdl = cluster.service_url("VmCounter") + "?wsdl"
    assert [call(wsdl, "Increment", []).value for _ in range(3)] == [1, 2, 3]
    wait_for_snapshot(cluster.hps[0].url)
    cluster.client.call("Undeploy", name="VmCounter")
    # A fresh deployment starts from the snapshot: the guest as it first answered, counting
    # from 1 again (the snapshot was taken before any message reached it).
    again = call(wsdl, "Increment", [])
    assert (again.value, again.headers["x-dynasoar-cold"]) == (1, "1")
    assert snapshot_stats(cluster.hps[0].url).restored == 1


def test_the_sp_ships_a_snapshot_taken_elsewhere_only_what_the_host_lacks(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(hps=[LIBVIRT, LIBVIRT])
    first, second = (hp.url for hp in cluster.hps)
    cluster.client.publish(FULL)
    cluster.client.call("Deploy", name="VmEcho", host=first)  # boots; the snapshot is taken
    wait_for(
        lambda: cluster.client.call("ListServices")[0].snapshot,
        timeout=60,
        what="the SP to fetch the snapshot",
    )
    snapshot_bytes = cluster.client.call("ListServices")[0].snapshotBytes
    images = sum(p.stat().st_size for p in FULL.iterdir() if p.suffix not in (".toml", ".wsdl"))

    cluster.client.call("Deploy", name="VmEcho", host=second)  # a host that never booted it
    stats = snapshot_stats(second)
    assert (stats.taken, stats.restored) == (0, 1)
    received = hp_port(second).Status().cache.received
    assert received == images + snapshot_bytes  # the images and the snapshot, once
    cluster.client.call("Undeploy", name="VmEcho", host=second)
    cluster.client.call("Deploy", name="VmEcho", host=second)
    assert hp_port(second).Status().cache.received == received  # held: nothing travels
    assert snapshot_stats(second).restored == 2
    reply = call(cluster.service_url("VmEcho") + "?wsdl", "Echo", ["text=either copy"])
    assert reply.value == "either copy"


def test_the_sp_boots_the_guest_where_its_snapshot_cannot_restore(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(hps=[LIBVIRT, LIBVIRT])
    first, second = (hp.url for hp in cluster.hps)
    cluster.client.publish(FULL)
    cluster.client.call("Deploy", name="VmEcho", host=first)
    wait_for(
        lambda: cluster.client.call("ListServices")[0].snapshot,
        timeout=60,
        what="the SP to fetch the snapshot",
    )
    # The SP's snapshot, as if taken on another platform (a host of another QEMU).
    registry = sqlite3.connect(cluster.work / "sp" / "registry.sqlite")
    with registry:
        (descriptor,) = registry.execute("SELECT descriptor FROM snapshots").fetchone()
        elsewhere = json.loads(descriptor)
        elsewhere["platform"][0] = "pc-q35-2.4"
        registry.execute("UPDATE snapshots SET descriptor = ?", (json.dumps(elsewhere),))
    registry.close()

    cluster.client.call("Deploy", name="VmEcho", host=second)  # refused, then booted
    own = wait_for_snapshot(second)  # taken as it booted (kept in the background)
    stats = snapshot_stats(second)
    assert (stats.restored, stats.fallbacks, stats.taken) == (0, 0, 1)
    sp_log = (cluster.work / "sp.log").read_text()
    assert f"{second} cannot restore VmEcho's snapshot" in sp_log and "pc-q35-2.4" in sp_log
    assert own.machine != "pc-q35-2.4"  # its own


def test_copies_of_one_snapshot_run_side_by_side_on_one_host(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(hps=[])
    hp = cluster.add_hp(register=False, args=LIBVIRT).url
    first_id, first = direct.deploy(FULL, hp)
    wait_for_snapshot(hp)
    copies = [direct.deploy(FULL, hp) for _ in range(2)]
    stats = snapshot_stats(hp)
    assert (stats.taken, stats.restored) == (1, 2)
    endpoints = [first, *(endpoint for _, endpoint in copies)]
    assert len(set(endpoints)) == 3  # a port each
    listed = {d.id: d.endpoint for d in hp_port(hp).List()}
    assert set(listed.values()) == set(endpoints)
    ids = [first_id, *(i for i, _ in copies)]
    disks = [disk_of(deployment_id) for deployment_id in ids]
    # a disk overlay of its own each, in its own deployment's directory
    assert [Path(disk).parent.name for disk in disks] == ids
    assert all(Path(disk).name.startswith("overlay") for disk in disks)
    replies = [echo(endpoint, f"copy {n}") for n, endpoint in enumerate(endpoints)]
    assert [text for text, _ in replies] == ["copy 0", "copy 1", "copy 2"]
    assert len({message_id for _, message_id in replies}) == 3  # reseeded: no shared randomness
    for deployment_id in [first_id, *(i for i, _ in copies)]:
        assert direct.undeploy(deployment_id, hp)


def disk_of(deployment_id: str) -> str:
    """The file a deployment's guest writes to (its disk's top), as libvirt says."""
    names = subprocess.run(
        ["virsh", "-c", "qemu:///system", "list", "--name"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    (name,) = [n for n in names if n.endswith("-" + deployment_id)]
    listed = subprocess.run(
        ["virsh", "-c", "qemu:///system", "domblklist", name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (line,) = [line for line in listed.splitlines() if line.strip().startswith("vda")]
    return line.split()[1]


def test_a_restore_that_fails_falls_back_to_a_boot(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(hps=[LIBVIRT])
    hp = cluster.hps[0].url
    cluster.client.publish(FULL)
    wsdl = cluster.service_url("VmEcho") + "?wsdl"
    call(wsdl, "Echo", ["text=first"])
    snapshot = wait_for_snapshot(hp)
    cluster.client.call("Undeploy", name="VmEcho")
    # The host's copy of the memory state goes bad on its disk (its cache trusts its files).
    memory = cluster.work / "hp1" / "images" / snapshot.memory.sha256
    memory.chmod(0o644)
    with memory.open("r+b") as f:
        f.truncate(snapshot.memory.size // 3)

    reply = call(wsdl, "Echo", ["text=booted instead"])
    assert (reply.value, reply.headers["x-dynasoar-cold"]) == ("booted instead", "1")
    stats = snapshot_stats(hp)
    assert (stats.restored, stats.fallbacks) == (0, 1)
    assert "booting instead" in (cluster.work / "hp1.log").read_text()


def two_hosts(make_cluster: MakeCluster) -> tuple[Cluster, str, str]:
    """Two Host Providers of no SP: the first has booted vm-echo (and kept its snapshot)."""
    cluster = make_cluster(hps=[])
    one = cluster.add_hp(register=False, args=LIBVIRT).url
    two = cluster.add_hp(register=False, args=LIBVIRT).url
    deployment_id, _ = direct.deploy(FULL, one)
    wait_for_snapshot(one)
    direct.undeploy(deployment_id, one)
    return cluster, one, two


def nothing_kept(hp: str, digests: list[str]) -> bool:
    port = hp_port(hp)
    return not port.QueryImages(digests).held and not port.List() and not listed_snapshots(hp)


def test_a_snapshot_travels_to_a_host_that_never_booted_the_image(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    _, one, two = two_hosts(make_cluster)
    snapshot, parts = fetch_snapshot(one, tmp_path)
    assert set(parts) == {p.sha256 for p in snapshot.parts}
    _, endpoint = ship(two, FULL, ShippedSnapshot(snapshot, parts))
    stats = snapshot_stats(two)
    assert (stats.taken, stats.restored) == (0, 1)
    assert echo(endpoint, "travelled")[0] == "travelled"
    assert [s.sha256 for s in listed_snapshots(two)] == [snapshot.digest]


def test_a_snapshot_from_an_incompatible_host_is_refused(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    _, one, two = two_hosts(make_cluster)
    snapshot, parts = fetch_snapshot(one, tmp_path)
    elsewhere = dataclasses.replace(snapshot, platform=Platform("pc-q35-2.4", "host-model", "kvm"))
    with pytest.raises(SnapshotIncompatible) as refused:
        ship(two, FULL, ShippedSnapshot(elsewhere, parts))
    reason = refused.value.reason
    assert "pc-q35-2.4" in reason and snapshot.platform.machine in reason
    assert "same machine type, CPU model and accelerator" in reason
    assert nothing_kept(two, list(parts))


def test_a_truncated_or_altered_snapshot_is_refused_at_upload(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    _, one, two = two_hosts(make_cluster)
    snapshot, parts = fetch_snapshot(one, tmp_path / "fetched")
    memory = parts[snapshot.memory.sha256]
    data = memory.read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    truncated, altered = bad / "truncated", bad / "altered"
    truncated.write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    altered.write_bytes(bytes(flipped))
    for sent in (truncated, altered):
        with pytest.raises(DeploymentFailed) as refused:
            ship(two, FULL, ShippedSnapshot(snapshot, {**parts, snapshot.memory.sha256: sent}))
        assert "cut short or altered" in refused.value.reason
        assert nothing_kept(two, list(parts))
        assert snapshot_stats(two).restored == 0
    # The snapshot as it was: restored.
    _, endpoint = ship(two, FULL, ShippedSnapshot(snapshot, parts))
    assert echo(endpoint, "intact")[0] == "intact"
    assert snapshot_stats(two).restored == 1


def test_a_manifest_that_opts_out_is_never_snapshotted(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    package = tmp_path / "no-snapshot"
    shutil.copytree(FULL, package)
    manifest = package / "dynasoar.toml"
    text = manifest.read_text().replace('name = "VmEcho"', 'name = "VmEchoFresh"')
    manifest.write_text(text.replace("[vm]\n", "[vm]\nsnapshot = false\n"))
    cluster = make_cluster(hps=[LIBVIRT])
    hp = cluster.hps[0].url
    cluster.client.publish(package)
    wsdl = cluster.service_url("VmEchoFresh") + "?wsdl"
    for text in ("boots", "boots again"):
        assert call(wsdl, "Echo", [f"text={text}"]).value == text
        cluster.client.call("Undeploy", name="VmEchoFresh")
    stats = snapshot_stats(hp)
    assert (stats.taken, stats.restored, stats.held) == (0, 0, 0)
    assert listed_snapshots(hp) == []
