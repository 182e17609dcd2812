"""Publishing VM packages: images travel beside the package archive, by digest, and only when
the Service Provider does not hold them yet; a differencing disk brings its base once."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from dynasoar import ns
from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.consumer.publish import Upload, prepare
from dynasoar.errors import InvalidPackage, RemoteFault
from dynasoar.images import ImageRef

from .conftest import Cluster
from .vmpkg import make_base, make_vm_package

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-utils")


def _stored_images(cluster: Cluster) -> set[str]:
    return {p.name for p in (cluster.work / "sp" / "repository" / "images").iterdir()}


def test_images_are_sent_once(cluster: Cluster, tmp_path: Path) -> None:
    package = make_vm_package(tmp_path / "vm", "VmA")
    first = cluster.client.publish(package)
    assert (first.kind, first.images_sent) == ("vm", 2)  # disk and kernel
    again = cluster.client.publish(package)
    assert again.images_sent == 0
    assert again.sha256 == first.sha256
    (service,) = cluster.client.call("ListServices")
    assert (service.name, service.kind) == ("VmA", "vm")
    assert len(_stored_images(cluster)) == 2


def test_an_overlay_brings_its_base_once(cluster: Cluster, tmp_path: Path) -> None:
    base = make_base(tmp_path / "images")
    one = cluster.client.publish(make_vm_package(tmp_path / "one", "VmOne", base=base))
    assert one.images_sent == 3  # overlay, kernel, base
    two = cluster.client.publish(make_vm_package(tmp_path / "two", "VmTwo", base=base))
    assert two.images_sent == 1  # only its own overlay: the kernel and the base are held
    assert len(_stored_images(cluster)) == 4  # base, kernel, two overlays


def test_archive_of_a_vm_package_is_split_by_the_sp(cluster: Cluster, tmp_path: Path) -> None:
    """A client that sends everything in one archive (no separate images) works too."""
    package = make_vm_package(tmp_path / "vm", "VmTar")
    archive = tmp_path / "vm.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in package.iterdir():
            tar.add(path, arcname=path.name)
    client = ProviderClient(cluster.sp.url)
    upload = prepare(package, tmp_path / "scratch")
    stripped = Upload(upload.manifest, archive, ())  # the whole archive, no images
    info = client.send(stripped)
    assert info.kind == "vm"
    assert len(_stored_images(cluster)) == 2
    assert cluster.client.publish(package).images_sent == 0  # the SP holds both now


def test_digest_mismatch_is_refused_and_stores_nothing(cluster: Cluster, tmp_path: Path) -> None:
    package = make_vm_package(tmp_path / "vm", "VmBad")
    upload = prepare(package, tmp_path / "scratch")
    ref, path = upload.images[0]
    forged = ((ImageRef(ref.name, "0" * 64, ref.size), path), *upload.images[1:])
    with pytest.raises(RemoteFault) as refused:
        ProviderClient(cluster.sp.url).send(Upload(upload.manifest, upload.archive, forged))
    assert (ns.DYN, "MalformedMessage") in refused.value.fault.subcodes
    assert "SHA-256" in refused.value.fault.reason
    assert _stored_images(cluster) == set()
    assert cluster.client.call("ListServices") == []


def test_a_base_that_does_not_match_is_refused_locally(tmp_path: Path) -> None:
    base = make_base(tmp_path / "images", mib=1)
    package = make_vm_package(tmp_path / "vm", "VmWrong", base=base)
    manifest = package / "dynasoar.toml"
    text = manifest.read_text()
    start = text.index("sha256:") + len("sha256:")
    manifest.write_text(text[:start] + "f" * 64 + text[start + 64 :])
    with pytest.raises(InvalidPackage, match="not the base"):
        prepare(package, tmp_path / "scratch")
