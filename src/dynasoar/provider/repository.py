"""The Service Provider's repository of published packages, under ``DATA/repository``.

A publish validates the package (manifest, WSDL, safe unpacking) before keeping anything. A
code package's archive is kept as ``NAME/VERSION-SHA256[:12].pkg``; every published version is
kept (the latest few, and any still routed or deployed: :meth:`Repository.prune`). A VM
package's images go to the content-addressed store ``images/`` (deduplicated, by SHA-256) and
what travels to hosts as "the package" is the rest, re-packed without them, so an image is
shipped to a host only when that host does not hold it yet.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from dynasoar.errors import InvalidPackage
from dynasoar.images import ImageCache, ImageRef, IncomingImage, sha256_file
from dynasoar.package import Manifest, UnpackLimits, load_manifest, pack, unpack
from dynasoar.provider.registry import Registry, ServiceRecord, now
from dynasoar.qcow2 import is_qcow2
from dynasoar.wsdl import read_contract


class Repository:
    def __init__(
        self, root: Path, registry: Registry, limits: UnpackLimits = UnpackLimits()
    ) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.images = ImageCache(root / "images")
        self._registry = registry
        self._limits = limits
        #: Told (digest, size) of the images a publish brought or named: this SP holds them
        #: (recorded in the registry for the SPs sharing it: provider/image_holders.py).
        self.on_held: Callable[[Iterable[tuple[str, int]]], None] = lambda images: None
        for leftover in root.glob("publish-*"):  # a publish cut short by a crash
            shutil.rmtree(leftover, ignore_errors=True)

    def publish(
        self, archive: Path, sha256: str | None = None, images: Sequence[IncomingImage] = ()
    ) -> tuple[ServiceRecord, Manifest]:
        """Validate the package and take it over (files are moved, not copied)."""
        given = {image.name: image for image in images}
        if len(given) != len(images):
            raise InvalidPackage("an image name appears twice in the publish")
        with tempfile.TemporaryDirectory(prefix="publish-", dir=self.root) as tmp:
            root = unpack(archive, Path(tmp) / "pkg", self._limits)
            manifest = load_manifest(root, external=frozenset(given))
            wsdl = (root / manifest.wsdl).read_bytes()
            read_contract(wsdl, f"the package's WSDL {manifest.wsdl!r}")
            if manifest.kind == "vm":
                refs = self._take_images(manifest, root, given)
                archive = pack(
                    root, Path(tmp) / "package.tar.gz", exclude=frozenset(manifest.image_files)
                )
                sha256 = None
            elif given:
                raise InvalidPackage("a code package carries no images; send only the archive")
            else:
                refs = ()
            record = self._keep(archive, sha256, manifest, wsdl, refs)
        if refs:
            self.on_held((ref.sha256, ref.size) for ref in refs)
        return record, manifest

    def _take_images(
        self, manifest: Manifest, root: Path, given: dict[str, IncomingImage]
    ) -> tuple[ImageRef, ...]:
        unknown = set(given) - {*manifest.image_files, "base"}
        if unknown:
            raise InvalidPackage(f"images {sorted(unknown)} are not named in the manifest")
        assert manifest.vm is not None
        for name, sent in given.items():
            if name in (manifest.vm.disk, "base") and sent.attachment is not None:
                _require_qcow2(sent.attachment.path, name)
        if manifest.vm.disk not in given:
            _require_qcow2(root / manifest.vm.disk, manifest.vm.disk)
        refs = []
        for name in manifest.image_files:
            image = given.get(name)
            if image is None:  # it came inside the archive
                refs.append(self.images.adopt(root / name, name))
            else:
                refs.append(self._stored(image))
        base = manifest.base_sha256
        if base is not None:
            if "base" in given:
                if given["base"].sha256.lower() != base:
                    raise InvalidPackage("the image sent as base is not the manifest's base")
                refs.append(self._stored(given["base"]))
            elif self.images.holds(base):
                refs.append(ImageRef("base", base, self.images.path(base).stat().st_size))
            else:
                raise InvalidPackage(
                    f"the base image sha256:{base} is not in this repository: publish it with "
                    'the package (as the image named "base")'
                )
        return tuple(refs)

    def _stored(self, image: IncomingImage) -> ImageRef:
        if image.attachment is not None:
            path = self.images.store(image.attachment, image.sha256)
        elif self.images.holds(image.sha256.lower()):
            path = self.images.path(image.sha256.lower())
        else:
            raise InvalidPackage(
                f"image {image.name!r} (sha256:{image.sha256}) was neither sent nor held here"
            )
        return ImageRef(image.name, path.name, path.stat().st_size)

    def _keep(
        self,
        archive: Path,
        sha256: str | None,
        manifest: Manifest,
        wsdl: bytes,
        images: tuple[ImageRef, ...],
    ) -> ServiceRecord:
        digest = sha256 or sha256_file(archive)
        target_dir = self.root / "packages" / manifest.name
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / f"{_safe(manifest.version)}-{digest[:12]}.pkg"
        size = archive.stat().st_size + sum(image.size for image in images)
        shutil.move(archive, target)
        os.chmod(target, 0o600)
        if self._registry.shared:  # the other SPs ship it from the registry
            self._registry.put_package(digest, target.read_bytes())
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
            images=images,
            placement=manifest.placement,
            require_signed=manifest.require_signed,
            call_timeout=manifest.call_timeout,
        )
        previous = self._registry.version(manifest.name, manifest.version)
        self._registry.put_version(record)
        # The same version published again with other content: running deployments keep their
        # own copy; new ones ship the content published last.
        if previous is not None and previous.package != record.package:
            Path(previous.package).unlink(missing_ok=True)
        return record

    def held_images(self) -> dict[str, int]:
        """Every image in the repository: digest, size."""
        return {path.name: path.stat().st_size for path in self.images.held()}

    def package_path(self, record: ServiceRecord) -> Path:
        """Where a version's archive is on this SP's disk: another SP sharing the registry
        published it, it is copied from the registry first."""
        path = Path(record.package)
        if path.exists():
            return path
        name = f"{_safe(record.version)}-{record.sha256[:12]}.pkg"
        local = self.root / "packages" / record.name / name
        if local.exists():
            return local
        content = self._registry.package(record.sha256) if self._registry.shared else None
        if content is None:
            raise InvalidPackage(
                f"{record.name} {record.version}'s package is not in this Service Provider's "
                "repository; publish it again"
            )
        local.parent.mkdir(parents=True, exist_ok=True)
        spare = local.with_suffix(".part")
        spare.write_bytes(content)
        spare.chmod(0o600)
        spare.replace(local)
        return local

    def prune(self, name: str, keep: int, in_use: set[str]) -> list[str]:
        """Forget the versions of ``name`` beyond the ``keep`` newest, but those ``in_use``
        (routed or deployed); returns the versions removed."""
        versions = self._registry.versions(name)
        removed = []
        for record in versions[: max(0, len(versions) - keep)]:
            if record.version not in in_use:
                self.remove(record)
                removed.append(record.version)
        return removed

    def remove(self, record: ServiceRecord) -> None:
        """One version gone: its record and its package (images stay: others may share them)."""
        self._registry.remove_version(record.name, record.version)
        Path(record.package).unlink(missing_ok=True)
        if self._registry.shared and not any(
            v.sha256 == record.sha256 for v in self._registry.versions(record.name)
        ):
            self._registry.remove_package(record.sha256)


def _require_qcow2(path: Path, name: str) -> None:
    if not is_qcow2(path):
        raise InvalidPackage(f"the VM disk {name!r} is not a qcow2 image")


def _safe(version: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in version)[:64]
