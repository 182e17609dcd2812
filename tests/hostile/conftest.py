"""The platform the corpus attacks, started once per module, and the ways it is watched: state
snapshots of both actors, liveness, and the resident memory of both processes."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dynasoar.consumer.host_client import HostClient
from dynasoar.demo import _keys
from dynasoar.http import ConnectionPool
from dynasoar.keys import make_keypair
from dynasoar.paths import samples_dir
from dynasoar.procs import start_actor
from dynasoar.soap.client import SoapClient
from dynasoar.soap.envelope import SoapVersion
from dynasoar.soap.security import Credentials, Policy, TrustStore
from integration.conftest import Cluster
from integration.wire import ECHO_ACTION, echo_body, envelope, get, post

from . import rawwire

MiB = 1 << 20
#: Growth of either process's RSS over the baseline, for the whole corpus run.
RSS_BUDGET = 16 * MiB
#: What a case may leave in either process right after its answer(s), over its runs.
RSS_PER_CASE = 8 * MiB
#: The pause before that sample (the answer is written before the handler's last frees).
RSS_SETTLE = 0.05
#: Samples the baseline is the highest of: the one after the warm-up (test_corpus.py runs
#: every heavy case once first), then after each of the first cases.
BASELINE_SAMPLES = 4
#: How long a case's after-effects (a spool file, a cut connection) may take to clear.
SETTLE_SECONDS = 5.0
#: The slow-loris runs in the background from start-up; the SP's head timeout is 10 s.
SLOWLORIS_DEADLINE = 30.0


@dataclass
class Rss:
    """VmRSS samples of the two servers, and the baseline they are held to."""

    pids: dict[str, int]
    samples: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    baseline: dict[str, int] | None = None
    #: Per case: how far RSS rose over the RSS before it, right after its answers.
    rises: dict[str, dict[str, int]] = field(default_factory=dict)

    def now(self) -> dict[str, int]:
        return {role: _vm_rss(pid) for role, pid in self.pids.items()}

    def record(self, case: str) -> dict[str, int]:
        """Sample after a case; the baseline is the highest of the first few samples (the
        first one taken right after the warm-up)."""
        sample = self.now()
        self.samples.append((case, sample))
        if self.baseline is None and len(self.samples) >= BASELINE_SAMPLES:
            self.baseline = {role: max(s[role] for _, s in self.samples) for role in self.pids}
        return sample

    def over_budget(self, sample: dict[str, int]) -> dict[str, str]:
        if self.baseline is None:
            return {}
        return {
            role: f"{(sample[role] - self.baseline[role]) / MiB:+.1f} MiB over the baseline "
            f"{self.baseline[role] / MiB:.1f} MiB"
            for role in self.pids
            if sample[role] - self.baseline[role] > RSS_BUDGET
        }

    def report(self) -> str:
        roles = list(self.pids)
        head = (
            " ".join(f"{r:>9}" for r in roles) + "  " + " ".join(f"{r + ' rise':>9}" for r in roles)
        )
        lines = [f"{'case':48} {head}"]
        for case, sample in self.samples:
            rise = self.rises.get(case, {})
            lines.append(
                f"{case[:48]:48} "
                + " ".join(f"{sample[r] / MiB:8.1f}M" for r in roles)
                + "  "
                + " ".join(f"{rise[r] / MiB:+8.1f}M" if r in rise else " " * 9 for r in roles)
            )
        return "\n".join(lines)


def _vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@dataclass
class SlowLoris:
    """A connection trickling a never-ending request head, started with the platform."""

    address: tuple[str, int]
    result: tuple[rawwire.Exchange, float] | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = None
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        def run() -> None:
            try:
                deadline = time.monotonic() + SLOWLORIS_DEADLINE
                self.result = rawwire.trickle_head(self.address, 0.5, deadline, self.stopping)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True, name="slowloris")
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(5)

    def outcome(self) -> tuple[rawwire.Exchange, float]:
        assert self.thread is not None
        self.thread.join(SLOWLORIS_DEADLINE + 5)
        if self.error is not None:
            raise self.error
        assert self.result is not None, "the slow-loris thread did not finish"
        return self.result


@dataclass
class Hostile:
    """The platform under attack and everything a case needs to know about it."""

    cluster: Cluster
    work: Path
    credentials: dict[str, Credentials]  # "sp" (trusted by the HP), "rogue", "lookalike"
    rss: Rss
    slowloris: dict[str, SlowLoris]
    _host_client: tuple[HostClient, ConnectionPool, asyncio.AbstractEventLoop] | None = None

    @property
    def sp_url(self) -> str:
        return self.cluster.sp.url

    @property
    def hp_url(self) -> str:
        return self.cluster.hps[0].url

    @property
    def echo_url(self) -> str:
        return self.cluster.service_url("Echo")

    @property
    def management_url(self) -> str:
        return self.sp_url + "/dynasoar/ServiceProvider"

    @property
    def hp_port_url(self) -> str:
        return self.hp_url + "/dynasoar/HostProvider"

    def address(self, role: str) -> tuple[str, int]:
        url = self.sp_url if role == "sp" else self.hp_url
        host, _, port = url.partition("://")[2].partition(":")
        return host, int(port)

    # -- liveness -----------------------------------------------------------------------

    def alive(self) -> None:
        """Both servers answer, and a message still goes all the way to the deployment."""
        for url in (self.sp_url, self.hp_url):
            reply = get(url + "/healthz", timeout=10)
            assert (reply.status, reply.body) == (200, b"ok"), f"{url} stopped serving"
        reply = post(
            self.echo_url, envelope(echo_body("still here")), soap_action=ECHO_ACTION, timeout=30
        )
        assert reply.status == 200, reply.body[:500]
        assert reply.text(".//echo:text") == "still here"
        assert reply.headers["x-dynasoar-cold"] == "0", "the live deployment was lost"

    # -- state ----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        client = self.cluster.client
        services = [
            (s.name, s.version, s.kind, s.stateless, s.sha256, s.size, s.published, s.deployments)
            for s in client.call("ListServices") or []
        ]
        deployments = [
            (d.id, d.service, d.host, d.endpoint, d.state, d.created)
            for d in client.call("ListDeployments") or []
        ]
        hosts = [
            (h.address, h.state, h.capacity, h.deployments, _cache(h.cache))
            for h in client.call("ListHosts") or []
        ]
        status, listed = self._hp_account()
        return {
            "sp registry": {"services": services, "deployments": deployments, "hosts": hosts},
            "sp files": _tree(self.work / "sp", skip={"registry.sqlite"}),
            "hp account": {"status": status, "deployments": listed},
            "hp files": _tree(self.work / "hp1", names_only={"deployments"}),
        }

    def settled(self, before: dict[str, Any]) -> dict[str, Any]:
        """The state once it equals ``before``, or as it still is after a few seconds."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            now = self.state()
            if now == before or time.monotonic() > deadline:
                return now
            time.sleep(0.1)

    def _hp_account(self) -> tuple[tuple[object, ...], list[dict[str, str]]]:
        """The HP's Status and List, asked as the SP asks: signed, replies verified."""
        if self._host_client is None:
            loop = asyncio.new_event_loop()
            pool = ConnectionPool()
            keys = self.work / "keys"
            policy = Policy(
                credentials=self.credentials["sp"],
                trust=TrustStore.from_paths([keys / "hp1.crt"]),
            )
            self._host_client = (
                HostClient(SoapClient(pool, SoapVersion.SOAP12, policy)),
                pool,
                loop,
            )
        client, _, loop = self._host_client

        async def ask() -> tuple[tuple[object, ...], list[dict[str, str]]]:
            status = await client.status(self.hp_url, timeout=10)
            listed = await client.list_deployments(self.hp_url, timeout=10)
            return (
                status.address,
                status.capacity,
                status.deployments,
                status.cache,
            ), listed

        return loop.run_until_complete(ask())

    def close(self) -> None:
        if self._host_client is not None:
            _, pool, loop = self._host_client
            loop.run_until_complete(pool.close())
            loop.close()
            self._host_client = None


def _cache(cache: Any) -> tuple[object, ...] | None:
    if cache is None:
        return None
    return (cache.images, cache.bytes, cache.capacity, cache.received)


def _tree(
    root: Path, skip: set[str] = frozenset(), names_only: set[str] = frozenset()
) -> list[tuple[str, int, str]]:
    """Every file under ``root``: (relative path, size, SHA-256). Under the top-level
    directories in ``names_only`` (running deployments, whose logs grow) only the names
    of what is there, at two levels."""
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        top = rel.parts[0]
        if top.split("-")[0] in skip or "__pycache__" in rel.parts:
            continue
        if top in names_only:
            if len(rel.parts) <= 2:
                out.append((str(rel), 0, ""))
            continue
        if path.is_file():
            data = path.read_bytes()
            out.append((str(rel), len(data), hashlib.sha256(data).hexdigest()))
        else:
            out.append((str(rel) + "/", 0, ""))
    return out


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    """SP + HP signed as ``make demo`` runs them, echo published and deployed once."""
    work = tmp_path_factory.mktemp("hostile")
    signing = _keys(work)  # sp, hp1, hp2 key pairs; trusted-by-sp / trusted-by-hosts
    sp = start_actor(
        "sp", ["--port", "0", "--data", str(work / "sp"), *signing["sp"]], work / "sp.log"
    )
    cluster = Cluster(work, sp)
    hostile = None
    try:
        cluster.add_hp(capacity=4, args=signing["hp1"])
        cluster.client.publish(samples_dir() / "echo")
        reply = post(cluster.service_url("Echo"), envelope(echo_body()), soap_action=ECHO_ACTION)
        assert reply.status == 200 and reply.headers["x-dynasoar-cold"] == "1", reply.body[:500]
        rogue = make_keypair(work / "rogue", "rogue")
        lookalike = make_keypair(work / "lookalike", "sp")  # the SP's name, another key
        keys = work / "keys"
        hostile = Hostile(
            cluster=cluster,
            work=work,
            credentials={
                "sp": Credentials.load(keys / "sp.key", keys / "sp.crt"),
                "rogue": Credentials.load(*rogue),
                "lookalike": Credentials.load(*lookalike),
            },
            rss=Rss({"sp": cluster.sp.process.pid, "hp": cluster.hps[0].process.pid}),
            slowloris={},
        )
        for role in ("sp", "hp"):
            hostile.slowloris[role] = SlowLoris(hostile.address(role))
            hostile.slowloris[role].start()
        hostile.alive()
        yield hostile
    finally:
        if hostile is not None:
            for loris in hostile.slowloris.values():
                loris.stop()
            hostile.close()
        cluster.stop()
