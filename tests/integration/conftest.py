"""Real SP and HP processes on 127.0.0.1 for the integration tests."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.paths import samples_dir
from dynasoar.procs import Actor, start_actor

if TYPE_CHECKING:
    from .grid import Grid


@dataclass
class Cluster:
    work: Path
    sp: Actor
    hps: list[Actor] = field(default_factory=list)
    sp_args: list[str] = field(default_factory=list)

    @property
    def client(self) -> ProviderClient:
        return ProviderClient(self.sp.url)

    def start_sp(self) -> Actor:
        """The SP, started; once it has stopped, started again on its port (as a restart is:
        its hosts beat and consumers call where they did)."""
        port = "0"
        if self.sp is not None and self.sp.process.poll() is not None:
            port = self.sp.url.rsplit(":", 1)[1]
        args = ["--port", port, "--data", str(self.work / "sp"), *self.sp_args]
        self.sp = start_actor("sp", args, self.work / "sp.log")
        return self.sp

    def add_hp(self, capacity: int = 8, register: bool = True, args: Sequence[str] = ()) -> Actor:
        index = len(self.hps) + 1
        argv = [
            "--port",
            "0",
            "--data",
            str(self.work / f"hp{index}"),
            "--capacity",
            str(capacity),
            *args,
        ]
        if register:
            argv += ["--sp", self.sp.url]
        hp = start_actor("hp", argv, self.work / f"hp{index}.log")
        self.hps.append(hp)
        if register:
            wait_for(lambda: hp.url in self.hosts_up(), what=f"{hp.url} to register")
        return hp

    def hosts_up(self) -> set[str]:
        return {h.address for h in self.client.call("ListHosts") or [] if h.state == "up"}

    def service_url(self, name: str) -> str:
        return f"{self.sp.url}/services/{name}"

    def stop(self) -> None:
        for actor in [*self.hps, self.sp]:
            if actor is not None:
                actor.stop()


def wait_for(predicate, timeout: float = 20.0, what: str = "a condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def make_package(
    tmp: Path, sample: str = "echo", name: str | None = None, placement: str = ""
) -> Path:
    """A copy of a sample package, optionally under another service name and with a
    ``[placement]`` table (its body given as TOML lines)."""
    target = tmp / f"pkg-{sample}-{name or 'orig'}"
    shutil.copytree(samples_dir() / sample, target, ignore=shutil.ignore_patterns("__pycache__"))
    if name is not None:
        manifest = target / "dynasoar.toml"
        text = manifest.read_text()
        original = {"echo": "Echo", "counter": "Counter"}[sample]
        manifest.write_text(text.replace(f'name = "{original}"', f'name = "{name}"', 1))
    if placement:
        manifest = target / "dynasoar.toml"
        manifest.write_text(manifest.read_text() + f"\n[placement]\n{placement}\n")
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
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """A factory: ``make_cluster(sp_args=[...], hps=[[hp args], ...])`` (HPs register)."""
    made: list[Cluster] = []

    def make(sp_args: Sequence[str] = (), hps: Sequence[Sequence[str]] = ((), ())) -> Cluster:
        c = Cluster(tmp_path / f"cluster{len(made)}", None, sp_args=list(sp_args))  # type: ignore[arg-type]
        made.append(c)
        c.start_sp()
        for args in hps:
            c.add_hp(args=args)
        return c

    yield make
    for c in made:
        c.stop()


@pytest.fixture
def grid(tmp_path: Path, pg_url: str) -> Iterator[Grid]:
    """SPs sharing one real PostgreSQL registry, and their hosts, started as a test asks."""
    from .grid import Grid  # (grid.py uses this module's helpers)

    g = Grid(tmp_path, pg_url)
    try:
        yield g
    finally:
        g.stop()


@pytest.fixture
def echo(cluster: Cluster) -> str:
    """The echo sample published on the cluster's SP; its service URL."""
    cluster.client.publish(samples_dir() / "echo")
    return cluster.service_url("Echo")
