"""A benchmark's actors: SP and HPs as real processes, and the CPU time they use."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.procs import Actor, start_actor

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (from /proc)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def pid_of_deployment(deployment_id: str) -> int:
    """The service process running a deployment: a runner started for it (its command line
    names the deployment) or a pre-started one it was handed to (its working directory is the
    deployment's package)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            if b"dynasoar.host.runner" in cmdline:
                if deployment_id.encode() in cmdline:
                    return int(entry)
            elif b"dynasoar.host.warm" in cmdline:
                if deployment_id in os.readlink(f"/proc/{entry}/cwd"):
                    return int(entry)
        except OSError:
            continue
    raise LookupError(f"no process runs deployment {deployment_id}")


@dataclass
class BenchCluster:
    work: Path
    sp: Actor
    hps: list[Actor] = field(default_factory=list)

    @classmethod
    def start(cls, work: Path, hosts: int = 1, hp_args: list[str] | None = None) -> BenchCluster:
        work.mkdir(parents=True, exist_ok=True)
        sp = start_actor("sp", ["--port", "0", "--data", str(work / "sp")], work / "sp.log")
        cluster = cls(work, sp)
        for i in range(hosts):
            hp = start_actor(
                "hp",
                [
                    "--port",
                    "0",
                    "--data",
                    str(work / f"hp{i}"),
                    "--capacity",
                    "16",
                    *(hp_args or []),
                ],
                work / f"hp{i}.log",
            )
            cluster.hps.append(hp)
            cluster.client.call("RegisterHost", address=hp.url)
        return cluster

    @property
    def client(self) -> ProviderClient:
        return ProviderClient(self.sp.url)

    def stop(self) -> None:
        for actor in [*self.hps, self.sp]:
            actor.stop()
