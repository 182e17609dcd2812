"""Mobility with several SPs on one shared PostgreSQL registry: a guest moved through one SP
while consumers call it through another keeps its count, every answer once, and no SP takes
the move for a loss; and when the SP moving it is killed once the guest is paused, the other
settles the move and answers on from the same count (real PostgreSQL, two real SPs, two real
libvirt + QEMU hosts)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dynasoar.consumer.call import call
from dynasoar.consumer.provider_client import ProviderClient

from .conftest import wait_for
from .grid import Grid, hosts_up
from .load import Load, summary
from .test_mobility import assert_in_sequence, dynasoar
from .test_shared_registry import wait_advertised
from .vmhosts import COUNTER, require_vm_host

LIBVIRT = ["--backend", "libvirt"]


@pytest.fixture(autouse=True)
def _vm_host() -> None:
    require_vm_host()
    if not (COUNTER / "dynasoar.toml").is_file():
        pytest.fail("the vm-counter image is not built: `make vm-image` (make test does it)")


def test_a_guest_moved_through_one_sp_keeps_its_count_for_callers_of_another(
    grid: Grid,
) -> None:
    a = grid.start_sp()
    b = grid.start_sp()
    grid.add_hp(a, LIBVIRT)
    grid.add_hp(a, LIBVIRT)
    wait_for(lambda: len(hosts_up(b)) == 2, what="both hosts, seen by both SPs")
    ProviderClient(a.url).publish(COUNTER)
    wait_advertised(b.url, "VmCounter")
    for n in (1, 2, 3):  # deployed and counted through the SP holding its image
        reply = call(f"{a.url}/services/VmCounter?wsdl", "Increment", [])
        assert reply.value == n
    source = reply.headers["x-dynasoar-host"]
    (target,) = [hp.url for hp in grid.hps if hp.url != source]

    load = Load(b.url, echo=0, counter=8, counter_name="VmCounter").start()
    wait_for(lambda: load.count() >= 16, timeout=60, what="the clients of the other SP")
    moved = dynasoar("move", "VmCounter", "--to", target, "--sp", a.url)
    if moved.returncode != 0:
        load.stop()
    assert moved.returncode == 0, moved.stderr + summary(load.outcomes)
    after = load.count()
    wait_for(lambda: load.count() >= after + 16, timeout=60, what="calls after the move")
    outcomes = load.stop()

    assert all(o.ok for o in outcomes), summary(outcomes)
    values = [int(o.value or 0) for o in outcomes]
    assert_in_sequence(values, first=4)
    assert {o.host for o in outcomes} == {source, target}
    for sp in (a, b):
        (deployment,) = ProviderClient(sp.url).call("ListDeployments", name="VmCounter")
        assert (deployment.host, deployment.state) == (target, "ready")
    assert "is lost" not in b.log()


#: What a host logs once it has paused and saved a guest to move it.
PAUSED = "to move it: paused"
#: What the SP that settles a dead mover's move logs: the guest resumed, or the restored one kept.
SETTLED = ("died before the switch: resumed at", "the move is complete")


def test_a_move_whose_sp_dies_once_the_guest_is_paused_leaves_it_answering(grid: Grid) -> None:
    # No reconciliation during the test (it too resumes a guest left paused, tens of seconds
    # later): what answers the calls after the kill is the settling of the dead SP's move.
    quiet = ["--reconcile-interval", "3600", "--call-timeout", "30"]
    a = grid.start_sp(*quiet)
    b = grid.start_sp(*quiet)
    grid.add_hp(a, LIBVIRT)
    grid.add_hp(a, LIBVIRT)
    wait_for(lambda: len(hosts_up(b)) == 2, what="both hosts, seen by both SPs")
    ProviderClient(a.url).publish(COUNTER)
    wait_advertised(b.url, "VmCounter")
    for n in (1, 2, 3):
        reply = call(f"{a.url}/services/VmCounter?wsdl", "Increment", [])
        assert reply.value == n
    source = reply.headers["x-dynasoar-host"]
    (source_hp,) = [hp for hp in grid.hps if hp.url == source]
    (target,) = [hp.url for hp in grid.hps if hp.url != source]

    load = Load(b.url, echo=0, counter=8, counter_name="VmCounter").start()
    wait_for(lambda: load.count() >= 16, timeout=60, what="the clients of the other SP")
    move = subprocess.Popen(
        [sys.executable, "-m", "dynasoar", "move", "VmCounter", "--to", target, "--sp", a.url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: PAUSED in source_hp.log(), timeout=120, what="the guest paused")
        a.kill()  # SIGKILL: the move stops wherever it was once the guest was paused
    finally:
        try:
            move.wait(timeout=60)
        except subprocess.TimeoutExpired:
            move.kill()
            move.wait()
    killed_at = load.count()
    wait_for(
        lambda: load.count() >= killed_at + 16, timeout=120, what="calls after the SP died"
    )
    outcomes = load.stop()

    assert all(o.ok for o in outcomes), summary(outcomes)
    assert_in_sequence([int(o.value or 0) for o in outcomes], first=4)  # the count went on
    (deployment,) = ProviderClient(b.url).call("ListDeployments", name="VmCounter")
    assert deployment.state == "ready"
    assert any(line in b.log() for line in SETTLED), b.log()[-3000:]
