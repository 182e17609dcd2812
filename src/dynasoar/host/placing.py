"""Where a Host Provider puts a deployment's files: a VM package's images into the image cache
(received ones checked and stored, then linked from the package's directory), and the directory
deployments live in (reachable by sandboxed services, or a scratch directory of its own)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from dynasoar.errors import ImageNotHeld, InvalidPackage, InvalidRequest
from dynasoar.host import sandbox
from dynasoar.images import ImageCache, IncomingImage
from dynasoar.package import Manifest
from dynasoar.qcow2 import is_qcow2

log = logging.getLogger(__name__)


def place_images(
    cache: ImageCache,
    root: Path,
    manifest: Manifest,
    images: tuple[IncomingImage, ...],
    received: list[str],
) -> tuple[list[str], Path | None]:
    """Put a VM package's images in place: received ones into the cache, then links from
    the package directory into the cache. Returns the pinned digests and the base image;
    ``received`` gets the digests this Deploy brought into the cache."""
    wanted = {*manifest.image_files, *(["base"] if manifest.base_sha256 else [])}
    given = {image.name: image for image in images}
    if set(given) != wanted:
        raise InvalidRequest(
            f"the package needs the images {sorted(wanted)}, the Deploy named {sorted(given)}"
        )
    base: Path | None = None
    pinned: list[str] = []
    try:
        disks = {manifest.vm.disk if manifest.vm else None, "base"}
        for image in images:
            if image.attachment is not None and image.name in disks:
                _check_qcow2(image)
            path = _acquire(cache, image, received)
            pinned.append(image.sha256.lower())
            if image.name == "base":
                if image.sha256 != manifest.base_sha256:
                    raise InvalidPackage("the image sent as base is not the manifest's base")
                base = path
            else:
                (root / image.name).symlink_to(path)
    except BaseException:
        cache.unpin(pinned)
        raise
    return pinned, base


def _acquire(cache: ImageCache, image: IncomingImage, received: list[str]) -> Path:
    """Pin the image in the cache (storing it if it came with the Deploy)."""
    acquired = cache.acquire(image.sha256, image.attachment)
    if acquired is None:
        raise ImageNotHeld(
            f"image {image.name!r} (sha256:{image.sha256}) is not in this host's cache; "
            "send its content"
        )
    path, taken = acquired
    if taken:
        received.append(path.name)
    return path


def _check_qcow2(image: IncomingImage) -> None:
    """A disk must be a qcow2 image: refused before it enters the cache if it is not."""
    assert image.attachment is not None
    if not is_qcow2(image.attachment.path):
        raise InvalidPackage(f"the image {image.name!r} is not a qcow2 disk image")


SCRATCH_PREFIX = "dynasoar-deployments-"


def _clear_orphaned_scratch() -> None:
    """Scratch directories of HPs that died without cleaning up (SIGKILL, a crash)."""
    for directory in Path(tempfile.gettempdir()).glob(SCRATCH_PREFIX + "*"):
        try:
            owner = int((directory / ".owner").read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(directory, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours to judge: unreadable, or its owner is alive


def deployments_root(data: Path) -> tuple[Path, bool]:
    """Where deployments live: ``DATA/deployments`` when sandboxed services can reach it
    (every directory above it searchable by others; it lists nothing), else a scratch
    directory of its own under the system's temporary directory. (Returns it and whether
    it is scratch.)"""
    directory = data / "deployments"
    directory.mkdir(parents=True, exist_ok=True)
    for path in (data, directory):
        path.chmod(0o711)
    if sandbox.unreachable(directory) is None:
        return directory, False
    _clear_orphaned_scratch()
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
    scratch.chmod(0o711)
    (scratch / ".owner").write_text(str(os.getpid()))
    log.info("deployments live in %s: sandboxed services cannot reach %s", scratch, directory)
    return scratch, True
