"""Several real SPs sharing one real PostgreSQL registry, and real HPs, for the grid's tests."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.pgserver import PostgresServer
from dynasoar.procs import Actor, start_actor

from .conftest import wait_for
from .wire import get

LEADS = "this SP leads the control loop"


@dataclass
class Grid:
    work: Path
    registry: str
    sps: list[Actor] = field(default_factory=list)
    hps: list[Actor] = field(default_factory=list)

    def start_sp(self, *args: str) -> Actor:
        index = len(self.sps) + 1
        sp = start_actor(
            "sp",
            [
                "--port",
                "0",
                "--data",
                str(self.work / f"sp{index}"),
                "--registry",
                self.registry,
                *args,
            ],
            self.work / f"sp{index}.log",
        )
        self.sps.append(sp)
        return sp

    def add_hp(self, sp: Actor, args: Sequence[str] = (), via: str | None = None) -> Actor:
        """A host beating to ``sp`` (or to ``via``, a load balancer in front of the SPs: its
        --sp), once ``sp`` lists it up."""
        index = len(self.hps) + 1
        hp = start_actor(
            "hp",
            ["--port", "0", "--data", str(self.work / f"hp{index}"), "--sp", via or sp.url, *args],
            self.work / f"hp{index}.log",
        )
        self.hps.append(hp)
        wait_for(lambda: hp.url in hosts_up(sp), what=f"{hp.url} to register")
        return hp

    def leader(self) -> Actor | None:
        """The SP whose log says, last, that it took the lead (and that is still running)."""
        leaders = [sp for sp in self.sps if sp.process.poll() is None and LEADS in sp.log()]
        return leaders[0] if len(leaders) == 1 else None

    def stop(self) -> None:
        for actor in [*self.hps, *self.sps]:
            actor.stop()


def hosts_up(sp: Actor) -> set[str]:
    return {h.address for h in ProviderClient(sp.url).call("ListHosts") or [] if h.state == "up"}


def beats_heard(sp: Actor) -> float:
    """The heartbeats (RegisterHost) ``sp`` itself answered, by its /metrics."""
    reply = get(f"{sp.url}/metrics")
    assert reply.status == 200
    return sum(
        sample.value
        for family in text_string_to_metric_families(reply.body.decode())
        for sample in family.samples
        if sample.name == "dynasoar_sp_control_messages_total"
        and sample.labels == {"operation": "RegisterHost", "outcome": "ok"}
    )


def downs(sp: Actor) -> list[str]:
    """The hosts ``sp`` judged down (it leads, or led, the control loop), by its log."""
    return re.findall(r"host (\S+) is down: .*", sp.log())


def deployments(sp: Actor, service: str) -> list[object]:
    return [
        d for d in ProviderClient(sp.url).call("ListDeployments", name=service) or []
    ]


def placement_lines(sp: Actor) -> list[str]:
    return re.findall(r"placement of \S+: .*", sp.log())


def fresh_registry(postgres: PostgresServer, name: str) -> str:
    import psycopg

    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres.url.rsplit("/", 1)[0] + "/" + name
