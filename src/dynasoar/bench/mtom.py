"""Benchmark (c): moving a VM image. A raw ``curl --data-binary @file`` upload to a minimal
receiver against the same image published as an MTOM attachment to a real SP (side by side in
one run), and the peak RSS of the client, the SP and (deploying it) the HP, against their idle
size: memory must not grow with the image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dynasoar.bench.cluster import BenchCluster
from dynasoar.paths import samples_dir
from dynasoar.procs import first_line

MiB = 1 << 20
MANIFEST = """[service]
name = "BigImage"
version = "1.0"
kind = "vm"
stateless = true
wsdl = "Echo.wsdl"

[vm]
disk = "disk.qcow2"
port = 8000
path = "/Echo"
"""


def make_package(directory: Path, size: int) -> Path:
    """A VM package whose disk is a qcow2 image holding ``size`` bytes of data."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / "disk.raw"
    block = os.urandom(MiB)
    with raw.open("wb") as f:
        for _ in range(size // MiB):
            f.write(block)
    subprocess.run(
        [
            "qemu-img",
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            str(raw),
            str(directory / "disk.qcow2"),
        ],
        check=True,
    )
    raw.unlink()
    (directory / "Echo.wsdl").write_bytes((samples_dir() / "echo" / "Echo.wsdl").read_bytes())
    (directory / "dynasoar.toml").write_text(MANIFEST)
    return directory


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def curl_upload(work: Path, image: Path) -> float:
    sink = subprocess.Popen(
        [sys.executable, "-m", "dynasoar.bench.sink", str(work / "sink")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = first_line(sink, 30).removeprefix("listening on ")
        started = time.perf_counter()
        subprocess.run(
            [
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                # --data-binary @FILE reads the file into memory first and gives up at 2 GiB;
                # --upload-file streams the same bytes with a Content-Length: a raw upload at
                # curl's best, sent as the POST --data-binary would send.
                "--upload-file",
                str(image),
                "-X",
                "POST",
                "-H",
                "Content-Type: application/octet-stream",
                "-H",
                "Expect:",
                url,
            ],
            check=True,
        )
        return time.perf_counter() - started
    finally:
        sink.terminate()
        sink.wait(10)


def mtom_publish(package: Path, sp: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "dynasoar.bench.publisher", str(package), sp],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def image_transfer(work: Path, size: int, rounds: int) -> None:
    print(
        f"\n(c) moving a {size / MiB / 1024:.2f} GiB VM image: curl raw upload vs MTOM "
        f"publish, {rounds} rounds each",
        flush=True,
    )
    package = make_package(work / "package", size)
    image = package / "disk.qcow2"
    cluster = BenchCluster.start(work / "cluster", hosts=0)
    try:
        sp_pid = cluster.sp.process.pid
        sp_idle = rss_kib(sp_pid)
        curl_times, mtom_times, client_growth = [], [], []
        for _ in range(rounds):
            curl_times.append(curl_upload(work, image))
            _forget_images(work / "cluster" / "sp")
            result = mtom_publish(package, cluster.sp.url)
            mtom_times.append(result["seconds"])
            client_growth.append((result["peak_kib"] - result["idle_kib"]) / 1024)
        sp_growth = (rss_kib(sp_pid, "VmHWM") - sp_idle) / 1024
    finally:
        cluster.stop()
    curl_s, mtom_s = min(curl_times), min(mtom_times)
    gib = image.stat().st_size / (1 << 30)
    print(f"    curl raw upload → minimal receiver  {gib / curl_s:6.2f} GiB/s")
    print(f"    MTOM publish → SP (spool, SHA-256)     {gib / mtom_s:6.2f} GiB/s")
    print(f"    MTOM / raw curl throughput             {curl_s / mtom_s:6.2f}   (target >= 0.70)")
    print(
        f"    peak RSS over idle: client {max(client_growth):5.1f} MiB, SP {sp_growth:5.1f} MiB"
        "   (target <= 64 MiB each)",
        flush=True,
    )


def _forget_images(sp_data: Path) -> None:
    """Each round must send the image again: empty the SP's image store between rounds."""
    store = sp_data / "repository" / "images"
    if store.exists():
        for path in store.iterdir():
            path.chmod(0o644)
            path.unlink()
