"""The Service Provider's repository of published packages, under ``DATA/repository``.

A publish validates the archive (manifest, WSDL, safe unpacking), then moves it into place as
``NAME/VERSION-SHA256[:12].pkg`` and records the service; nothing is kept of a refused one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from dynasoar.package import Manifest, UnpackLimits, inspect_archive
from dynasoar.provider.registry import Registry, ServiceRecord, now
from dynasoar.wsdl import read_contract


class Repository:
    def __init__(
        self, root: Path, registry: Registry, limits: UnpackLimits = UnpackLimits()
    ) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._registry = registry
        self._limits = limits

    def publish(self, archive: Path, sha256: str | None = None) -> tuple[ServiceRecord, Manifest]:
        """Validate ``archive`` and take it over (it is moved, not copied)."""
        manifest, wsdl = inspect_archive(archive, self._limits)
        read_contract(wsdl, f"the package's WSDL {manifest.wsdl!r}")
        digest = sha256 or _sha256(archive)
        target_dir = self.root / manifest.name
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / f"{_safe(manifest.version)}-{digest[:12]}.pkg"
        size = archive.stat().st_size
        shutil.move(archive, target)
        os.chmod(target, 0o600)
        record = ServiceRecord(
            name=manifest.name,
            version=manifest.version,
            kind=manifest.kind,
            stateless=manifest.stateless,
            sha256=digest,
            size=size,
            published=now(),
            package=str(target),
            wsdl=wsdl,
        )
        previous = self._registry.service(manifest.name)
        self._registry.put_service(record)
        # Running deployments keep their own copy; new ones ship the version published last.
        if previous is not None and previous.package != record.package:
            Path(previous.package).unlink(missing_ok=True)
        return record, manifest


def _safe(version: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in version)[:64]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
