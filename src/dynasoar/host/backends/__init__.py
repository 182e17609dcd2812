"""How a Host Provider runs what it hosts. Each backend turns an unpacked package into a
running endpoint and stops it again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dynasoar.host.logstore import ServiceLog
from dynasoar.package import Manifest


@dataclass
class Started:
    """A running deployment as its backend reports it."""

    endpoint: str
    handle: object


class Backend(Protocol):
    name: str

    def start(
        self,
        deployment_id: str,
        root: Path,
        manifest: Manifest,
        deadline: float,
        *,
        output: ServiceLog,
        base_image: Path | None = None,
    ) -> Started:
        """Run the package at ``root``; return once its endpoint answers a probe.

        The deployment's output (a service's stdout and stderr, a guest's console) goes to
        ``output``: the backend attaches the read ends of its pipes. ``base_image`` is the cached
        image a VM package's disk is an overlay on (its manifest's ``base``). Raises
        DeploymentFailed / DeploymentTimeout; leaves nothing running on failure."""
        ...

    def stop(self, handle: object, grace: float) -> bool:
        """Stop the deployment; returns whether it had stopped (or was stopping) by itself."""
        ...

    def alive(self, handle: object) -> bool: ...

    def usage(self, handle: object) -> tuple[float, int]:
        """What the deployment has consumed: (CPU seconds so far, resident bytes now)."""
        ...
