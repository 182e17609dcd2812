"""qcow2 headers: finding a differencing disk's base image (against images qemu-img made)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dynasoar.errors import InvalidPackage
from dynasoar.qcow2 import backing_file, is_qcow2

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img")


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def test_base_and_overlay(tmp_path: Path) -> None:
    base = tmp_path / "base.qcow2"
    qemu_img("create", "-f", "qcow2", str(base), "16M")
    (tmp_path / "sub").mkdir()
    overlay = tmp_path / "sub" / "disk.qcow2"
    qemu_img("create", "-f", "qcow2", "-b", "../base.qcow2", "-F", "qcow2", str(overlay))
    assert is_qcow2(base) and is_qcow2(overlay)
    assert backing_file(base) is None
    assert backing_file(overlay) == base.resolve()


def test_absolute_backing_path(tmp_path: Path) -> None:
    base = tmp_path / "base.qcow2"
    qemu_img("create", "-f", "qcow2", str(base), "1M")
    overlay = tmp_path / "overlay.qcow2"
    qemu_img("create", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay))
    assert backing_file(overlay) == base


@pytest.mark.parametrize("content", [b"", b"QFI", b"not a disk image at all" * 4])
def test_not_qcow2(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.img"
    path.write_bytes(content)
    assert not is_qcow2(path)
    with pytest.raises(InvalidPackage):
        backing_file(path)
