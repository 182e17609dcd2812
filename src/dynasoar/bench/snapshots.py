"""Benchmarks (e) and (f): VM snapshots, measured side by side in one run.

(e) vm-echo on one host, its images cached there: a cold call through the SP that restores the
    image's snapshot against a cold call that boots the same image (a copy of the package whose
    manifest opts out of snapshots), and a warm call.
(f) to hosts that hold nothing yet: the snapshot shipped with the images and restored, against
    the images shipped and booted; each a Deploy through the SP (shipped, started, probed).
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dynasoar.bench.cluster import BenchCluster
from dynasoar.bench.vm import BUILD, start_libvirt, vm_available
from dynasoar.consumer import direct
from dynasoar.consumer.call import call

LIBVIRT = ["--backend", "libvirt"]


def booting_copy(directory: Path, name: str) -> Path:
    """vm-echo under another name, its manifest saying ``[vm] snapshot = false``: the same
    images, always booted."""
    directory.mkdir(parents=True)
    source = BUILD / "vm-echo"
    for item in source.iterdir():
        if item.name != "dynasoar.toml":
            try:
                os.link(item, directory / item.name)  # the same bytes: no copy of 70 MB
            except OSError:
                shutil.copy(item, directory / item.name)
    manifest = (source / "dynasoar.toml").read_text()
    manifest = manifest.replace('name = "VmEcho"', f'name = "{name}"')
    (directory / "dynasoar.toml").write_text(manifest.replace("[vm]\n", "[vm]\nsnapshot = false\n"))
    return directory


def restore_vs_boot(work: Path, rounds: int = 3) -> None:
    why = vm_available()
    if why is not None:
        print(f"\n(e) snapshot start: skipped ({why})")
        return
    start_libvirt()
    print(
        f"\n(e) vm-echo through the SP (TCG), images cached at the host: a cold call restoring "
        f"the snapshot vs one booting; {rounds} rounds",
        flush=True,
    )
    cluster = BenchCluster.start(work / "cluster", hp_args=LIBVIRT)
    try:
        cluster.client.publish(BUILD / "vm-echo")
        cluster.client.publish(booting_copy(work / "boot", "VmEchoBoot"))
        echo = _caller(cluster, "VmEcho")
        boot = _caller(cluster, "VmEchoBoot")
        shipped = _timed(echo)  # the first boot: images shipped, then the snapshot taken
        _wait_for_snapshot(cluster)
        restored, booted, warm = [], [], []
        for _ in range(rounds):
            for name in ("VmEcho", "VmEchoBoot"):
                cluster.client.call("Undeploy", name=name)
            booted.append(_timed(boot))
            restored.append(_timed(echo))
            warm.append(_timed(echo))
    finally:
        cluster.stop()
    boot_s, restore_s = statistics.median(booted), statistics.median(restored)
    print(f"    cold, images shipped, booted          {shipped:6.2f} s")
    print(f"    cold, booted (images cached)          {boot_s:6.2f} s")
    print(
        f"    cold, restored (snapshot cached)      {restore_s:6.2f} s   "
        f"{restore_s / boot_s:.2f}x the boot (goal <= 0.3x)"
    )
    print(f"    warm                                  {statistics.median(warm) * 1000:6.0f} ms")


def shipped_snapshot(work: Path) -> None:
    why = vm_available()
    if why is not None:
        print(f"\n(f) a snapshot shipped to a fresh host: skipped ({why})")
        return
    start_libvirt()
    print(
        "\n(f) vm-echo deployed through the SP on a host that holds nothing: snapshot + images "
        "shipped and restored vs images shipped and booted",
        flush=True,
    )
    cluster = BenchCluster.start(work / "cluster", hosts=3, hp_args=LIBVIRT)
    try:
        first, fresh_boot, fresh_restore = (hp.url for hp in cluster.hps)
        cluster.client.publish(BUILD / "vm-echo")
        cluster.client.publish(booting_copy(work / "boot", "VmEchoBoot"))
        cluster.client.call("Deploy", name="VmEcho", host=first)  # boots; its snapshot is taken
        _wait_for_snapshot(cluster, learnt=True)
        booted = _timed(lambda: _deploy(cluster, "VmEchoBoot", fresh_boot))
        restored = _timed(lambda: _deploy(cluster, "VmEcho", fresh_restore))
        # Asked of the hosts: the SP's list says it only once each is heard from again.
        sent = {hp: _received(hp) for hp in (fresh_boot, fresh_restore)}
    finally:
        cluster.stop()
    print(
        f"    images shipped, booted                {booted:6.2f} s   "
        f"({sent[fresh_boot] / (1 << 20):.0f} MiB shipped)"
    )
    print(
        f"    snapshot + images shipped, restored   {restored:6.2f} s   "
        f"({sent[fresh_restore] / (1 << 20):.0f} MiB shipped)   {restored / booted:.2f}x"
    )


def _received(host: str) -> int:
    """Image and snapshot bytes ``host`` has taken in since it started, as it says."""
    cache = direct.status(host).cache
    return cache.received if cache is not None else 0


def _caller(cluster: BenchCluster, name: str) -> Callable[[], object]:
    wsdl = f"{cluster.sp.url}/services/{name}?wsdl"
    return lambda: call(wsdl, "Echo", ["text=bench"])


def _deploy(cluster: BenchCluster, name: str, host: str) -> None:
    """Deployed there (shipped, started, probed by the SP): ready for its first call."""
    deployment: Any = cluster.client.call("Deploy", name=name, host=host)
    assert deployment.host == host and deployment.state == "ready"


def _wait_for_snapshot(cluster: BenchCluster, learnt: bool = False, timeout: float = 120) -> None:
    """Until the host keeps its snapshot, asked of the host (``learnt``: until the SP has
    fetched it too). The SP's list of hosts says it only once the host is heard from again,
    and the bench's hosts, registered by hand, do not beat."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if learnt:
            services = cluster.client.call("ListServices") or []
            if any(s.name == "VmEcho" and s.snapshot for s in services):
                return
        elif any(
            s.service == "VmEcho" and s.kind == "image"
            for hp in cluster.hps
            for s in direct.snapshots(hp.url)
        ):
            return
        time.sleep(0.2)
    raise TimeoutError("no snapshot of vm-echo was kept")


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started
