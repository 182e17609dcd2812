"""The Host Provider's state: what it hosts, its capacity, and the deploy / undeploy steps.

A deployment directory is ``DATA/deployments/ID/`` holding the unpacked package (``pkg/``) and
the service's log. Deploy validates before it runs anything and leaves nothing behind on failure.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dynasoar import __version__
from dynasoar.errors import Busy, InvalidPackage, InvalidRequest, MalformedMessage
from dynasoar.host.backends import Backend
from dynasoar.package import UnpackLimits, load_manifest, unpack
from dynasoar.soap.mtom import Attachment

log = logging.getLogger(__name__)


@dataclass
class Hosted:
    id: str
    service: str
    version: str
    kind: str
    endpoint: str
    started: datetime
    directory: Path
    handle: object

    @property
    def state(self) -> str:
        return "ready"


@dataclass(frozen=True)
class DeployRequest:
    service: str
    version: str
    kind: str
    stateless: bool
    sha256: str


class HostProvider:
    def __init__(
        self,
        data: Path,
        backend: Backend,
        capacity: int,
        start_timeout: float = 60.0,
        unpack_limits: UnpackLimits = UnpackLimits(),
    ) -> None:
        self.data = data
        self.backend = backend
        self.capacity = capacity
        self.start_timeout = start_timeout
        self.address = ""
        self._limits = unpack_limits
        self._deployments_dir = data / "deployments"
        self._deployments_dir.mkdir(parents=True, exist_ok=True)
        self._hosted: dict[str, Hosted] = {}
        self._starting = 0
        self._lock = threading.Lock()
        self._clear_leftovers()

    def _clear_leftovers(self) -> None:
        """Directories of deployments from a previous run whose processes died with it."""
        for entry in self._deployments_dir.iterdir():
            shutil.rmtree(entry, ignore_errors=True)

    def deploy(self, request: DeployRequest, package: Attachment) -> Hosted:
        if request.kind != "code" or self.backend.name != "process":
            raise InvalidRequest(
                f"this host runs code packages; kind {request.kind!r} is not hosted here"
            )
        if request.sha256 and request.sha256.lower() != package.sha256:
            raise MalformedMessage(
                f"the package's SHA-256 is {package.sha256}, not {request.sha256} as declared"
            )
        self._reserve()
        deployment_id = uuid.uuid4().hex
        directory = self._deployments_dir / deployment_id
        try:
            root = unpack(package.path, directory / "pkg", self._limits)
            manifest = load_manifest(root)
            if manifest.name != request.service:
                raise InvalidPackage(
                    f"the package is service {manifest.name!r}, not {request.service!r} as declared"
                )
            deadline = time.monotonic() + self.start_timeout
            started = self.backend.start(deployment_id, root, manifest, deadline)
        except BaseException:
            self._release()
            shutil.rmtree(directory, ignore_errors=True)
            raise
        hosted = Hosted(
            id=deployment_id,
            service=manifest.name,
            version=manifest.version,
            kind=manifest.kind,
            endpoint=started.endpoint,
            started=datetime.now(UTC),
            directory=directory,
            handle=started.handle,
        )
        with self._lock:
            self._starting -= 1
            self._hosted[deployment_id] = hosted
        log.info(
            "deployed %s %s as %s at %s", hosted.service, hosted.version, hosted.id, hosted.endpoint
        )
        return hosted

    def _reserve(self) -> None:
        with self._lock:
            if len(self._hosted) + self._starting >= self.capacity:
                raise Busy(f"this host is at capacity ({self.capacity} deployments)")
            self._starting += 1

    def _release(self) -> None:
        with self._lock:
            self._starting -= 1

    def undeploy(self, deployment_id: str, grace: float = 5.0) -> bool:
        with self._lock:
            hosted = self._hosted.pop(deployment_id, None)
        if hosted is None:
            return False
        self.backend.stop(hosted.handle, grace)
        shutil.rmtree(hosted.directory, ignore_errors=True)
        log.info("undeployed %s (%s)", hosted.id, hosted.service)
        return True

    def hosted(self) -> list[Hosted]:
        with self._lock:
            items = list(self._hosted.values())
        return [h for h in items if self._check_alive(h)]

    def _check_alive(self, hosted: Hosted) -> bool:
        if self.backend.alive(hosted.handle):
            return True
        log.warning("deployment %s (%s) died; dropping it", hosted.id, hosted.service)
        self.undeploy(hosted.id, grace=0.1)
        return False

    @property
    def load(self) -> float:
        return os.getloadavg()[0]

    def status(self) -> dict[str, object]:
        return {
            "address": self.address,
            "backend": self.backend.name,
            "capacity": self.capacity,
            "deployments": len(self.hosted()),
            "load": self.load,
            "version": __version__,
        }

    def shutdown(self, grace: float = 5.0) -> None:
        for deployment_id in list(self._hosted):
            self.undeploy(deployment_id, grace)
