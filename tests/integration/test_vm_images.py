"""VM images end to end: the SP deploys a whole VM (vm-echo, built by `make vm-image`) on a
Host Provider running libvirt + QEMU, relays to the guest, and ships images only when the
host's cache does not hold them. Counted in bytes the HP received."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import zeep

from dynasoar.consumer.call import call

from .conftest import Cluster, wait_for

BUILD = Path(__file__).resolve().parents[2] / "deploy" / "services" / "vm-echo" / "build"
FULL, OVERLAY = BUILD / "vm-echo", BUILD / "vm-echo-overlay"

MakeCluster = Callable[..., Cluster]


@pytest.fixture
def vm_cluster(make_cluster: MakeCluster) -> Cluster:
    if not (FULL / "dynasoar.toml").is_file():
        pytest.fail("the vm-echo image is not built: `make vm-image` (make test does it)")
    subprocess.run(
        ["bash", str(BUILD.parents[2].parent / "scripts" / "start-libvirt.sh")],
        check=True,
        timeout=60,
    )
    return make_cluster(hps=[["--backend", "libvirt"]])


def received(cluster: Cluster) -> int:
    """Image bytes the (only) HP has taken in since it started."""
    hp = zeep.Client(cluster.hps[0].url + "/dynasoar/HostProvider?wsdl")
    return int(hp.service.Status().cache.received)


def domains() -> str:
    return subprocess.run(
        ["virsh", "-c", "qemu:///system", "list", "--all", "--name"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def qemu_processes(name: str) -> str:
    return subprocess.run(["pgrep", "-af", f"qemu.*{name}"], capture_output=True, text=True).stdout


def test_a_vm_service_cold_warm_and_undeployed_clean(vm_cluster: Cluster) -> None:
    vm_cluster.client.publish(FULL)
    wsdl = vm_cluster.service_url("VmEcho") + "?wsdl"
    first = call(wsdl, "Echo", ["text=from a whole VM"])
    assert first.value == "from a whole VM"
    assert first.headers["x-dynasoar-cold"] == "1"
    second = call(wsdl, "Echo", ["text=again"], soap12=True)
    assert (second.value, second.headers["x-dynasoar-cold"]) == ("again", "0")
    (deployment,) = vm_cluster.client.call("ListDeployments")
    name = f"-{deployment.id}"
    assert name in domains()
    assert vm_cluster.client.call("Undeploy", name="VmEcho") == 1
    wait_for(lambda: name not in domains(), what="the domain to go")
    assert not qemu_processes(deployment.id)
    data = vm_cluster.work / "hp1"
    leftovers = [p for p in data.rglob("*") if "deployments" in p.parts and p.is_file()]
    assert leftovers == []  # no overlay, no console FIFOs, no package
    # the guest's console was its log, and is kept after undeploy
    (log,) = vm_cluster.client.call("GetLogs", name="VmEcho").log
    assert (log.deployment, log.state) == (deployment.id, "undeployed")
    assert "dynasoar-guest: serving" in log.text


def test_a_guest_never_outlives_its_killed_host(vm_cluster: Cluster) -> None:
    vm_cluster.client.publish(FULL)
    deployment = vm_cluster.client.call("Deploy", name="VmEcho")
    name = f"-{deployment.id}"
    assert name in domains() and qemu_processes(deployment.id)
    vm_cluster.hps[0].kill()  # SIGKILL, and no Host Provider starts on its data directory again
    wait_for(lambda: name not in domains(), timeout=60, what="libvirt to destroy the guest")
    wait_for(lambda: not qemu_processes(deployment.id), timeout=30, what="QEMU to exit")


def test_a_redeploy_ships_no_image_bytes(vm_cluster: Cluster) -> None:
    vm_cluster.client.publish(FULL)
    images = sum(p.stat().st_size for p in FULL.iterdir() if p.suffix not in (".toml", ".wsdl"))
    vm_cluster.client.call("Deploy", name="VmEcho")
    first = received(vm_cluster)
    assert first == images
    vm_cluster.client.call("Undeploy", name="VmEcho")
    vm_cluster.client.call("Deploy", name="VmEcho")
    assert received(vm_cluster) == first  # zero image bytes the second time
    reply = call(vm_cluster.service_url("VmEcho") + "?wsdl", "Echo", ["text=x"])
    assert (reply.value, reply.headers["x-dynasoar-cold"]) == ("x", "0")


def test_an_overlay_on_a_held_base_ships_only_the_overlay(
    vm_cluster: Cluster, tmp_path: Path
) -> None:
    vm_cluster.client.publish(OVERLAY)
    vm_cluster.client.call("Deploy", name="VmEchoOverlay")
    before = received(vm_cluster)
    # a second service on the same base: its own overlay, the same kernel and initrd
    second = tmp_path / "second"
    shutil.copytree(OVERLAY, second, symlinks=False)
    manifest = second / "dynasoar.toml"
    manifest.write_text(
        manifest.read_text().replace('name = "VmEchoOverlay"', 'name = "VmEchoOverlay2"')
    )
    (second / "disk.qcow2").unlink()
    shutil.copy(OVERLAY / "disk.qcow2", second / "disk.qcow2")
    subprocess.run(
        [
            "qemu-img",
            "rebase",
            "-u",
            "-b",
            str(BUILD / "base.qcow2"),
            "-F",
            "qcow2",
            str(second / "disk.qcow2"),
        ],
        check=True,
    )
    # change a block the guest does not read, so this overlay is a different image
    subprocess.run(
        ["qemu-io", "-c", "write -P 0x42 15M 64k", str(second / "disk.qcow2")],
        check=True,
        capture_output=True,
    )
    vm_cluster.client.publish(second)
    reply = call(vm_cluster.service_url("VmEchoOverlay2") + "?wsdl", "Echo", ["text=thin"])
    assert reply.value == "thin"
    shipped = received(vm_cluster) - before
    assert shipped == (second / "disk.qcow2").stat().st_size  # the overlay, nothing else
    assert shipped < (BUILD / "base.qcow2").stat().st_size


def test_a_malformed_image_is_refused_and_leaves_nothing(
    vm_cluster: Cluster, tmp_path: Path
) -> None:
    import os

    from dynasoar.consumer.direct import deploy
    from dynasoar.errors import DynasoarError, RemoteFault

    bad = tmp_path / "bad"
    shutil.copytree(FULL, bad)
    (bad / "disk.qcow2").unlink()
    (bad / "disk.qcow2").write_bytes(os.urandom(1 << 20))  # not a qcow2 image at all
    manifest = bad / "dynasoar.toml"
    manifest.write_text(manifest.read_text().replace('name = "VmEcho"', 'name = "BadVm"'))
    with pytest.raises(RemoteFault) as at_sp:  # the SP refuses to publish it
        vm_cluster.client.publish(bad)
    assert "not a qcow2 image" in at_sp.value.fault.reason
    hp = vm_cluster.hps[0].url
    before = received(vm_cluster)
    with pytest.raises(DynasoarError) as at_hp:  # and so does the HP, sent it directly
        deploy(bad, hp)
    assert "qcow2" in str(at_hp.value)
    status = zeep.Client(hp + "/dynasoar/HostProvider?wsdl").service.Status()
    assert (status.deployments, status.cache.images) == (0, 0)
    assert received(vm_cluster) >= before  # it arrived, and was not kept
    assert "BadVm" not in domains()
