"""Mobility, end to end with real libvirt + QEMU: vm-counter moves between two Host Providers
with its count while consumers keep calling it (`dynasoar move`, `dynasoar drain`, `hp
--drain`); a move whose target dies midway leaves it running on its source, or, its source gone
too, lost; a stateless code service moves by redeploying, a stateful one cannot."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dynasoar.consumer.call import call
from dynasoar.errors import RemoteFault
from dynasoar.paths import samples_dir
from dynasoar.procs import start_actor

from .conftest import Cluster, wait_for
from .load import Load, summary
from .vmhosts import COUNTER, hp_port, require_vm_host

MakeCluster = Callable[..., Cluster]
LIBVIRT = ["--backend", "libvirt"]


@pytest.fixture(autouse=True)
def _vm_host() -> None:
    require_vm_host()
    if not (COUNTER / "dynasoar.toml").is_file():
        pytest.fail("the vm-counter image is not built: `make vm-image` (make test does it)")


def dynasoar(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynasoar", *args], capture_output=True, text=True, timeout=600
    )


def counting(cluster: Cluster, times: int = 3) -> tuple[str, str]:
    """vm-counter published and counted to ``times``; (its host, the other host)."""
    cluster.client.publish(COUNTER)
    wsdl = cluster.service_url("VmCounter") + "?wsdl"
    for n in range(1, times + 1):
        reply = call(wsdl, "Increment", [])
        assert reply.value == n
    source = reply.headers["x-dynasoar-host"]
    (other,) = [hp.url for hp in cluster.hps if hp.url != source]
    return source, other


def increment(cluster: Cluster) -> tuple[int, str]:
    reply = call(cluster.service_url("VmCounter") + "?wsdl", "Increment", [])
    return reply.value, reply.headers["x-dynasoar-host"]


def assert_in_sequence(values: list[int], first: int) -> None:
    """Every answer once: no count lost, none given twice."""
    assert sorted(values) == list(range(first, first + len(values)))


def test_vm_counter_moves_with_its_count_under_8_clients(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(hps=[LIBVIRT, LIBVIRT])
    source, target = counting(cluster)
    load = Load(cluster.sp.url, echo=0, counter=8, counter_name="VmCounter").start()
    wait_for(lambda: load.count() >= 16, timeout=60, what="the clients to get going")
    moved = dynasoar("move", "VmCounter", "--to", target, "--sp", cluster.sp.url)
    if moved.returncode != 0:
        load.stop()
    assert moved.returncode == 0, moved.stderr + summary(load.outcomes)
    assert f"moved VmCounter from {source} to {target} in " in moved.stdout
    after = load.count()
    wait_for(lambda: load.count() >= after + 16, timeout=60, what="calls after the move")
    outcomes = load.stop()

    assert all(o.ok for o in outcomes), summary(outcomes)
    values = [int(o.value or 0) for o in outcomes]
    assert_in_sequence(values, first=4)
    by_host = {o.host for o in outcomes}
    assert by_host == {source, target}  # counted on both: the count moved along
    last_on_source = max(int(o.value or 0) for o in outcomes if o.host == source)
    first_on_target = min(int(o.value or 0) for o in outcomes if o.host == target)
    assert first_on_target == last_on_source + 1
    (deployment,) = cluster.client.call("ListDeployments", name="VmCounter")
    assert (deployment.host, deployment.state) == (target, "ready")
    assert increment(cluster) == (len(values) + 4, target)
    # The bill has both: the source host, where the guest ran until the move (its final
    # figures, asked of it once the deployment ended there), and the target.
    billed = {r.host: r for r in cluster.client.call("GetUsage") if r.service == "VmCounter"}
    assert set(billed) == {source, target}
    assert billed[source].messages > 0 and billed[source].cpuSeconds > 0
    assert billed[target].messages > 0


def kill_when(condition: Callable[[], bool], *victims: Cluster | object) -> threading.Thread:
    """A thread that SIGKILLs ``victims`` (actors) as soon as ``condition`` holds."""

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if condition():
                for actor in victims:
                    actor.kill()  # type: ignore[attr-defined]
                return
            time.sleep(0.002)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def receiving(hp_data: Path) -> Callable[[], bool]:
    """Whether a Host Provider is taking a Deploy in (its spool holds the upload's parts)."""
    spool = hp_data / "spool"
    return lambda: spool.is_dir() and any(spool.iterdir())


def test_a_move_whose_target_dies_midway_leaves_it_on_its_source(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(hps=[LIBVIRT, LIBVIRT])
    source, target = counting(cluster)
    dying = next(hp for hp in cluster.hps if hp.url == target)
    index = cluster.hps.index(dying) + 1
    watcher = kill_when(receiving(cluster.work / f"hp{index}"), dying)
    moved = dynasoar("move", "VmCounter", "--to", target, "--sp", cluster.sp.url)
    watcher.join()
    assert moved.returncode != 0
    assert f"it runs on at {source}" in moved.stderr
    # The guest was resumed at its source with its count: no message was lost or repeated.
    assert increment(cluster) == (4, source)
    (deployment,) = cluster.client.call("ListDeployments", name="VmCounter")
    assert (deployment.host, deployment.state) == (source, "ready")


def test_a_move_whose_source_and_target_die_leaves_it_lost_not_empty(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(hps=[LIBVIRT, LIBVIRT])
    source, target = counting(cluster)
    by_url = {hp.url: (hp, n + 1) for n, hp in enumerate(cluster.hps)}
    (dying_target, index), (dying_source, _) = by_url[target], by_url[source]
    watcher = kill_when(receiving(cluster.work / f"hp{index}"), dying_target, dying_source)
    moved = dynasoar("move", "VmCounter", "--to", target, "--sp", cluster.sp.url)
    watcher.join()
    assert moved.returncode != 0
    # Neither guest is left: the service says so, and never answers from a fresh guest.
    for _ in range(2):
        with pytest.raises(RemoteFault) as lost:
            increment(cluster)
        assert any("HostLost" in code[1] for code in lost.value.fault.subcodes)
    assert "was lost while it moved" in moved.stderr
    (deployment,) = cluster.client.call("ListDeployments", name="VmCounter")
    assert deployment.state == "lost" and "its move failed" in (deployment.reason or "")


def test_a_move_cut_short_by_the_sp_stopping_leaves_it_on_its_source(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(hps=[LIBVIRT, LIBVIRT])
    source, target = counting(cluster)
    index = [hp.url for hp in cluster.hps].index(target) + 1
    watcher = kill_when(receiving(cluster.work / f"hp{index}"), cluster.sp)
    moved = dynasoar("move", "VmCounter", "--to", target, "--sp", cluster.sp.url)
    watcher.join()
    assert moved.returncode != 0  # the SP died under it: the guest is paused at its source
    port = cluster.sp.url.rsplit(":", 1)[1]
    cluster.sp = start_actor(
        "sp", ["--port", port, "--data", str(cluster.work / "sp")], cluster.work / "sp2.log"
    )
    # At start the SP settles the move it left: the target had no copy yet, so the paused
    # guest is resumed at its source, count and all.
    assert increment(cluster) == (4, source)
    (deployment,) = cluster.client.call("ListDeployments", name="VmCounter")
    assert (deployment.host, deployment.state) == (source, "ready")
    assert f"died before the switch: resumed at {source}" in (
        cluster.work / "sp2.log"
    ).read_text()


def test_dynasoar_drain_moves_vm_counter_with_its_count(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(hps=[LIBVIRT, LIBVIRT])
    source, target = counting(cluster)
    drained = dynasoar("drain", source, "--sp", cluster.sp.url)
    assert drained.returncode == 0, drained.stderr
    assert f"{source}: 1 deployment moved off" in drained.stdout
    assert increment(cluster) == (4, target)
    states = {h.address: h.state for h in cluster.client.call("ListHosts")}
    assert states[source] == "draining"


def test_hp_drain_moves_vm_counter_before_the_host_stops(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(hps=[[*LIBVIRT, "--drain"], LIBVIRT])
    first = cluster.hps[0].url
    cluster.client.publish(COUNTER)
    cluster.client.call("Deploy", name="VmCounter", host=first)
    for n in (1, 2):
        assert increment(cluster) == (n, first)
    cluster.hps[0].stop()  # SIGTERM: with --drain, it asks the SP to move its deployments first
    assert increment(cluster) == (3, cluster.hps[1].url)


def test_a_stateless_code_service_moves_a_stateful_one_cannot(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    cluster.client.publish(samples_dir() / "echo")
    cluster.client.publish(samples_dir() / "counter")
    echo_wsdl = cluster.service_url("Echo") + "?wsdl"
    source = call(echo_wsdl, "Echo", ["text=before"]).headers["x-dynasoar-host"]
    (target,) = [hp.url for hp in cluster.hps if hp.url != source]
    moved = dynasoar("move", "Echo", "--to", target, "--sp", cluster.sp.url)
    assert moved.returncode == 0, moved.stderr
    after = call(echo_wsdl, "Echo", ["text=after"])
    assert (after.value, after.headers["x-dynasoar-host"]) == ("after", target)

    call(cluster.service_url("Counter") + "?wsdl", "Increment", [])
    (deployment,) = cluster.client.call("ListDeployments", name="Counter")
    (other,) = [hp.url for hp in cluster.hps if hp.url != deployment.host]
    refused = dynasoar("move", "Counter", "--to", other, "--sp", cluster.sp.url)
    assert refused.returncode != 0
    assert "its state lives in its process and cannot move" in refused.stderr


def paused_domains() -> set[str]:
    listed = subprocess.run(
        ["virsh", "-c", "qemu:///system", "list", "--state-paused", "--name"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return {line.strip() for line in listed.splitlines() if line.strip()}


def test_a_resume_that_comes_while_the_guest_is_being_saved_resumes_it(
    make_cluster: MakeCluster,
) -> None:
    # The SP that settles a dead mover's move may ask for Resume while the host is still
    # saving the guest (paused already). The Resume waits for the save, then resumes it:
    # the guest is never left paused by a Resume that came too soon.
    cluster = make_cluster(sp_args=["--reconcile-interval", "3600"], hps=[LIBVIRT])
    cluster.client.publish(COUNTER)
    for n in (1, 2, 3):
        assert call(cluster.service_url("VmCounter") + "?wsdl", "Increment", []).value == n
    (deployment,) = cluster.client.call("ListDeployments", name="VmCounter")
    port = hp_port(deployment.host)
    saving = threading.Thread(target=port.SaveState, args=(deployment.id,))
    saving.start()
    deadline = time.monotonic() + 60
    while not any(name.endswith(deployment.id) for name in paused_domains()):
        assert time.monotonic() < deadline, "the guest was not paused by its save"
    assert "to move it: paused" not in cluster.hps[0].log()  # still saving
    assert port.Resume(deployment.id) is True
    saving.join(timeout=120)
    assert not any(name.endswith(deployment.id) for name in paused_domains())
    assert increment(cluster)[0] == 4
