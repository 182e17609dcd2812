"""The actors on the emulated network: the Service Provider (with the consumer beside it) in
one namespace, a Host Provider in the other, the shaped link between them. Both listen on fixed
ports of their namespace's address, so a restarted Host Provider (new data directory: empty
image cache) comes back at the same address and the SP keeps it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.experiment.netns import Link, NamespaceThread, in_namespace
from dynasoar.procs import Actor, start_actor

SP_PORT = 8080
HP_PORT = 8081
#: the SP gives a deployment this long (big images over slow links); a message waits at most
#: 150 s in the SP (its fixed message timeout), which bounds the sizes a slow profile can take
DEPLOY_TIMEOUT = 600.0
MESSAGE_LIMIT = 150.0
T = TypeVar("T")


@dataclass
class Testbed:
    work: Path
    link: Link
    consumer: NamespaceThread  # runs in the SP's namespace
    libvirt_uri: str | None = None  # None: the HP hosts code packages only
    sp: Actor | None = None
    hp: Actor | None = None
    generation: int = 0
    _client: ProviderClient | None = field(default=None, repr=False)

    @property
    def sp_url(self) -> str:
        return f"http://{self.link.left_addr}:{SP_PORT}"

    @property
    def hp_url(self) -> str:
        return f"http://{self.link.right_addr}:{HP_PORT}"

    def service_url(self, name: str) -> str:
        return f"{self.sp_url}/services/{name}"

    def start(self) -> Testbed:
        self.sp = start_actor(
            "sp",
            [
                "--host",
                self.link.left_addr,
                "--port",
                str(SP_PORT),
                "--data",
                str(self.work / "sp"),
                "--deploy-timeout",
                str(DEPLOY_TIMEOUT),
            ],
            self.work / "sp.log",
            prefix=in_namespace(self.link.left_ns),
        )
        self.restart_hp()
        return self

    def restart_hp(self) -> None:
        """A Host Provider with a fresh data directory (nothing cached), registered."""
        if self.hp is not None:
            self.hp.stop()
            self.hp = None
        self.generation += 1
        args = [
            "--host",
            self.link.right_addr,
            "--port",
            str(HP_PORT),
            "--service-host",
            self.link.right_addr,
            "--data",
            str(self.work / f"hp{self.generation}"),
            "--sp",
            self.sp_url,
            "--capacity",
            "8",
        ]
        if self.libvirt_uri is not None:
            args += ["--backend", "libvirt", "--libvirt-uri", self.libvirt_uri]
        self.hp = start_actor(
            "hp",
            args,
            self.work / f"hp{self.generation}.log",
            prefix=in_namespace(self.link.right_ns),
        )
        self._wait(lambda: self.hp_url in self._hosts_up(), f"{self.hp_url} to register")

    # -- the SP's management port, from the consumer's namespace ------------------------------

    def manage(self, operation: str, **kwargs: Any) -> Any:
        return self.consumer.run(self._client_of().call, operation, **kwargs)

    def publish(self, package: Path) -> None:
        self.consumer.run(self._client_of().publish, package)

    def undeploy(self, name: str) -> None:
        self.manage("Undeploy", name=name)

    def snapshot_of(self, name: str, timeout: float = 300.0) -> int:
        """Once the SP holds the snapshot of ``name`` (fetched from the host that took it,
        over the link): its bytes."""
        found: list[int] = []

        def held() -> bool:
            for service in self.manage("ListServices") or []:
                if service.name == name and service.snapshot:
                    found.append(int(service.snapshotBytes or 0))
                    return True
            return False

        self._wait(held, f"the SP to fetch the snapshot of {name}", timeout)
        return found[0]

    def _client_of(self) -> ProviderClient:
        if self._client is None:
            self._client = ProviderClient(self.sp_url, timeout=DEPLOY_TIMEOUT)
        return self._client

    def _hosts_up(self) -> set[str]:
        hosts = self.manage("ListHosts") or []
        return {h.address.rstrip("/") for h in hosts if h.state == "up"}

    def _wait(self, predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}")

    def logs(self) -> dict[str, str]:
        return {a.role + str(i): a.log() for i, a in enumerate((self.sp, self.hp)) if a is not None}

    def stop(self) -> None:
        for actor in (self.hp, self.sp):
            if actor is not None:
                actor.stop()
        self.hp = self.sp = None

    def __enter__(self) -> Testbed:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
