"""Getting a package ready to publish: the archive that travels as "the package" and, for a VM
package, its images beside it (each sent only if the Service Provider does not hold it yet).

A differencing disk's base image is found through the overlay's own qcow2 header and checked
against the manifest's ``base`` digest, so publishing an overlay also brings its base the first
time and never again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dynasoar.errors import InvalidPackage
from dynasoar.images import ImageRef, sha256_file
from dynasoar.package import Manifest, load_manifest, pack, unpack
from dynasoar.qcow2 import backing_file


@dataclass(frozen=True)
class Upload:
    """What a Publish sends: the archive and a VM package's images (with their local files).
    ``manifest`` is None for an archive sent as it is, unchecked here."""

    manifest: Manifest | None
    archive: Path
    images: tuple[tuple[ImageRef, Path], ...] = ()


def prepare(package: Path, scratch: Path) -> Upload:
    """The upload for a package directory or archive; files are written under ``scratch``."""
    scratch.mkdir(parents=True, exist_ok=True)
    if package.is_file():
        root = unpack(package, scratch / "unpacked")
    elif package.is_dir():
        root = package
    else:
        raise InvalidPackage(f"{package} is neither a package directory nor an archive")
    manifest = load_manifest(root)
    if manifest.kind == "code":
        return Upload(manifest, pack(root, scratch / "package.tar.gz"))
    images = [_image(root / name, name) for name in manifest.image_files]
    exclude = set(manifest.image_files)
    base = manifest.base_sha256
    if base is not None:
        assert manifest.vm is not None
        base_path = _base_image(root / manifest.vm.disk, base)
        images.append(_image(base_path, "base"))
        if base_path.is_relative_to(root.resolve()):
            exclude.add(base_path.relative_to(root.resolve()).as_posix())
    archive = pack(root, scratch / "package.tar.gz", exclude=frozenset(exclude))
    return Upload(manifest, archive, tuple(images))


def _image(path: Path, name: str) -> tuple[ImageRef, Path]:
    return ImageRef(name, sha256_file(path), path.stat().st_size), path


def _base_image(disk: Path, digest: str) -> Path:
    base = backing_file(disk)
    if base is None:
        raise InvalidPackage(f"the manifest names a base image, but {disk.name} is no overlay")
    if not base.is_file():
        raise InvalidPackage(f"{disk.name} is an overlay on {base}, which is not there")
    if sha256_file(base) != digest:
        raise InvalidPackage(
            f"{base.name} is not the base image sha256:{digest} the manifest names"
        )
    return base
