"""Real SP and HP processes on 127.0.0.1 for the integration tests."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.paths import samples_dir
from dynasoar.procs import Actor, start_actor


@dataclass
class Cluster:
    work: Path
    sp: Actor
    hps: list[Actor] = field(default_factory=list)

    @property
    def client(self) -> ProviderClient:
        return ProviderClient(self.sp.url)

    def start_sp(self) -> Actor:
        self.sp = start_actor(
            "sp", ["--port", "0", "--data", str(self.work / "sp")], self.work / "sp.log"
        )
        return self.sp

    def add_hp(self, capacity: int = 8, register: bool = True) -> Actor:
        index = len(self.hps) + 1
        args = ["--port", "0", "--data", str(self.work / f"hp{index}"), "--capacity", str(capacity)]
        if register:
            args += ["--sp", self.sp.url]
        hp = start_actor("hp", args, self.work / f"hp{index}.log")
        self.hps.append(hp)
        if register:
            wait_for(
                lambda: (
                    hp.url
                    in {h.address for h in self.client.call("ListHosts") or [] if h.state == "up"}
                ),
                what=f"{hp.url} to register",
            )
        return hp

    def service_url(self, name: str) -> str:
        return f"{self.sp.url}/services/{name}"

    def stop(self) -> None:
        for actor in [*self.hps, self.sp]:
            actor.stop()


def wait_for(predicate, timeout: float = 20.0, what: str = "a condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def make_package(tmp: Path, sample: str = "echo", name: str | None = None) -> Path:
    """A copy of a sample package, optionally under another service name."""
    target = tmp / f"pkg-{sample}-{name or 'orig'}"
    shutil.copytree(samples_dir() / sample, target, ignore=shutil.ignore_patterns("__pycache__"))
    if name is not None:
        manifest = target / "dynasoar.toml"
        text = manifest.read_text()
        original = {"echo": "Echo", "counter": "Counter"}[sample]
        manifest.write_text(text.replace(f'name = "{original}"', f'name = "{name}"', 1))
    return target


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """One SP and two registered HPs."""
    sp = start_actor("sp", ["--port", "0", "--data", str(tmp_path / "sp")], tmp_path / "sp.log")
    c = Cluster(tmp_path, sp)
    try:
        c.add_hp()
        c.add_hp()
        yield c
    finally:
        c.stop()


@pytest.fixture
def echo(cluster: Cluster) -> str:
    """The echo sample published on the cluster's SP; its service URL."""
    cluster.client.publish(samples_dir() / "echo")
    return cluster.service_url("Echo")
