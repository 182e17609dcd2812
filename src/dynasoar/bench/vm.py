"""Benchmark (d): a big VM image deployed through the SP to an HP running libvirt: the peak RSS
of SP and HP against their idle size (memory must not grow with the image). The vm-echo
guest's cold calls (booted, restored from a snapshot) are :mod:`dynasoar.bench.snapshots`'."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from dynasoar.bench.cluster import BenchCluster
from dynasoar.bench.mtom import rss_kib
from dynasoar.paths import SOURCE_ROOT

BUILD = SOURCE_ROOT / "deploy" / "services" / "vm-echo" / "build"
MiB = 1 << 20


def vm_available() -> str | None:
    """Why VM benchmarks cannot run here, or None when they can."""
    if not (BUILD / "vm-echo" / "dynasoar.toml").is_file():
        return "the vm-echo image is not built (make vm-image)"
    if shutil.which("libvirtd") is None:
        return "libvirt is not installed (scripts/install-vm.sh)"
    return None


def start_libvirt() -> None:
    subprocess.run(
        ["bash", str(SOURCE_ROOT / "scripts" / "start-libvirt.sh")], check=True, timeout=60
    )


def big_vm_package(directory: Path, size: int) -> Path:
    """vm-echo with ``size`` more bytes of data on its disk, beyond what the guest reads."""
    shutil.copytree(BUILD / "vm-echo", directory)
    disk = directory / "disk.qcow2"
    disk.chmod(0o644)
    subprocess.run(
        ["qemu-img", "resize", str(disk), f"{64 * MiB + size}"], check=True, capture_output=True
    )
    step = 256 * MiB  # qemu-io refuses single requests of 2 GiB and more
    commands = []
    for offset in range(0, size, step):
        commands += ["-c", f"write -P 0xa5 {64 * MiB + offset} {min(step, size - offset)}"]
    subprocess.run(["qemu-io", *commands, str(disk)], check=True, capture_output=True)
    manifest = directory / "dynasoar.toml"
    manifest.write_text(manifest.read_text().replace('name = "VmEcho"', 'name = "BigVm"'))
    return directory


def image_deploy(work: Path, size: int) -> None:
    why = vm_available()
    if why is not None:
        print(f"\n(d) deploying a big VM image: skipped ({why})")
        return
    start_libvirt()
    print(
        f"\n(d) deploying a {size / (1 << 30):.2f} GiB VM image through the SP to a libvirt HP",
        flush=True,
    )
    package = big_vm_package(work / "big", size)
    cluster = BenchCluster.start(work / "cluster", hp_args=["--backend", "libvirt"])
    try:
        sp, hp = cluster.sp.process.pid, cluster.hps[0].process.pid
        cluster.client.publish(package)
        idle = {"SP": rss_kib(sp), "HP": rss_kib(hp)}
        started = time.perf_counter()
        cluster.client.call("Deploy", name="BigVm")
        seconds = time.perf_counter() - started
        growth = {"SP": rss_kib(sp, "VmHWM") - idle["SP"], "HP": rss_kib(hp, "VmHWM") - idle["HP"]}
        cluster.client.call("Undeploy", name="BigVm")
    finally:
        cluster.stop()
    shipped = (package / "disk.qcow2").stat().st_size
    print(
        f"    shipped {shipped / (1 << 30):.2f} GiB and booted in {seconds:.1f} s "
        f"({shipped / seconds / MiB:.0f} MiB/s incl. boot)"
    )
    print(
        f"    peak RSS over idle: SP {growth['SP'] / 1024:5.1f} MiB, HP {growth['HP'] / 1024:5.1f}"
        " MiB   (target <= 64 MiB each)",
        flush=True,
    )
