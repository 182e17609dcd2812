"""Service packages: the dynasoar.toml manifest, packing a directory, and unpacking archives
(tar.gz, zip) with nothing escaping the target, no links or devices, and size limits."""

from __future__ import annotations

import gzip
import io
import os
import random
import shutil
import stat
import tarfile
import time
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dynasoar.errors import InvalidPackage, PayloadTooLarge
from dynasoar.package import (
    CodeSection,
    Manifest,
    UnpackLimits,
    VmSection,
    load_manifest,
    pack,
    parse_manifest,
    unpack,
)

ROOT = Path(__file__).resolve().parents[1]
ECHO = ROOT / "deploy" / "services" / "echo"

CODE_TOML = """
[service]
name = "Echo"
version = "1.0"
kind = "code"
stateless = true
wsdl = "Echo.wsdl"

[code]
app = "echo_service:application"
"""

VM_TOML = """
[service]
name = "vm-echo"
version = "2.1"
kind = "vm"
stateless = false
wsdl = "wsdl/Echo.wsdl"

[vm]
disk = "images/disk.qcow2"
base = "sha256:0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd0123abcd"
kernel = "boot/vmlinuz"
initrd = "boot/initrd.img"
port = 8080
path = "/Echo"
memory_mib = 256
vcpus = 2
"""


# -- manifest --------------------------------------------------------------------------------


def test_parse_code_manifest() -> None:
    m = parse_manifest(tomllib.loads(CODE_TOML))
    assert m == Manifest(
        name="Echo", version="1.0", kind="code", stateless=True, wsdl="Echo.wsdl",
        code=CodeSection("echo_service:application"),
    )
    assert m.code is not None
    assert (m.code.module, m.code.callable) == ("echo_service", "application")


def test_parse_vm_manifest() -> None:
    m = parse_manifest(tomllib.loads(VM_TOML))
    assert m == Manifest(
        name="vm-echo", version="2.1", kind="vm", stateless=False, wsdl="wsdl/Echo.wsdl",
        vm=VmSection(
            disk="images/disk.qcow2", base="sha256:" + "0123abcd" * 8, kernel="boot/vmlinuz",
            initrd="boot/initrd.img", port=8080, path="/Echo", memory_mib=256, vcpus=2,
        ),
    )


def test_vm_defaults_and_stateless_default() -> None:
    data = tomllib.loads(VM_TOML)
    del data["service"]["stateless"]
    data["vm"] = {"disk": "disk.qcow2"}
    m = parse_manifest(data)
    assert m.stateless is True
    assert m.vm == VmSection(disk="disk.qcow2")
    assert (m.vm.port, m.vm.path, m.vm.memory_mib, m.vm.vcpus) == (8000, "/", 128, 1)
    assert m.vm.snapshot is True  # copies may start from a snapshot unless it opts out


def test_a_vm_manifest_can_opt_out_of_snapshots() -> None:
    data = tomllib.loads(VM_TOML)
    data["vm"]["snapshot"] = False
    m = parse_manifest(data)
    assert m.vm is not None and m.vm.snapshot is False


def test_sample_manifests_parse() -> None:
    for toml in sorted((ROOT / "deploy" / "services").glob("*/dynasoar.toml")):
        manifest = load_manifest(toml.parent)
        assert manifest.kind in ("code", "vm")


DELETE = object()

#: (base manifest, table, key, new value or DELETE, text the message must contain)
INVALID: dict[str, tuple[str, str, str, Any, str]] = {
    "no-service-table": (CODE_TOML, "service", "", DELETE, "[service]"),
    "service-not-a-table": (CODE_TOML, "service", "", "Echo", "[service]"),
    "name-missing": (CODE_TOML, "service", "name", DELETE, "name"),
    "name-empty": (CODE_TOML, "service", "name", "  ", "name"),
    "name-not-a-string": (CODE_TOML, "service", "name", 7, "name"),
    "name-with-slash": (CODE_TOML, "service", "name", "../Echo", "name"),
    "name-with-space": (CODE_TOML, "service", "name", "My Echo", "name"),
    "name-starts-with-digit": (CODE_TOML, "service", "name", "1Echo", "name"),
    "name-too-long": (CODE_TOML, "service", "name", "E" * 65, "name"),
    "version-missing": (CODE_TOML, "service", "version", DELETE, "version"),
    "version-a-number": (CODE_TOML, "service", "version", 1.0, "version"),
    "kind-missing": (CODE_TOML, "service", "kind", DELETE, "kind"),
    "kind-unknown": (CODE_TOML, "service", "kind", "docker", "kind"),
    "stateless-a-string": (CODE_TOML, "service", "stateless", "yes", "stateless"),
    "stateless-an-int": (CODE_TOML, "service", "stateless", 1, "stateless"),
    "wsdl-missing": (CODE_TOML, "service", "wsdl", DELETE, "wsdl"),
    "wsdl-absolute": (CODE_TOML, "service", "wsdl", "/etc/Echo.wsdl", "wsdl"),
    "wsdl-escapes": (CODE_TOML, "service", "wsdl", "../Echo.wsdl", "wsdl"),
    "wsdl-escapes-deeper": (CODE_TOML, "service", "wsdl", "a/../../Echo.wsdl", "wsdl"),
    "wsdl-backslash": (CODE_TOML, "service", "wsdl", "..\\Echo.wsdl", "wsdl"),
    "no-code-table": (CODE_TOML, "code", "", DELETE, "[code]"),
    "app-missing": (CODE_TOML, "code", "app", DELETE, "app"),
    "app-without-callable": (CODE_TOML, "code", "app", "echo_service", "app"),
    "app-with-path": (CODE_TOML, "code", "app", "../echo:application", "app"),
    "app-with-call": (CODE_TOML, "code", "app", "echo_service:make()", "app"),
    "no-vm-table": (VM_TOML, "vm", "", DELETE, "[vm]"),
    "disk-missing": (VM_TOML, "vm", "disk", DELETE, "disk"),
    "disk-absolute": (VM_TOML, "vm", "disk", "/var/lib/disk.qcow2", "disk"),
    "disk-escapes": (VM_TOML, "vm", "disk", "../disk.qcow2", "disk"),
    "kernel-escapes": (VM_TOML, "vm", "kernel", "../../boot/vmlinuz", "kernel"),
    "initrd-absolute": (VM_TOML, "vm", "initrd", "/boot/initrd.img", "initrd"),
    "kernel-not-a-string": (VM_TOML, "vm", "kernel", 3, "kernel"),
    "base-not-a-string": (VM_TOML, "vm", "base", ["sha256:x"], "base"),
    "port-zero": (VM_TOML, "vm", "port", 0, "port"),
    "port-a-string": (VM_TOML, "vm", "port", "8000", "port"),
    "port-a-bool": (VM_TOML, "vm", "port", True, "port"),
    "memory-negative": (VM_TOML, "vm", "memory_mib", -1, "memory_mib"),
    "memory-a-float": (VM_TOML, "vm", "memory_mib", 128.5, "memory_mib"),
    "vcpus-zero": (VM_TOML, "vm", "vcpus", 0, "vcpus"),
    "path-relative": (VM_TOML, "vm", "path", "Echo", "path"),
    "path-not-a-string": (VM_TOML, "vm", "path", 5, "path"),
    "snapshot-a-string": (VM_TOML, "vm", "snapshot", "no", "[vm] snapshot"),
}


@pytest.mark.parametrize("case", INVALID)
def test_invalid_manifest_names_the_field(case: str) -> None:
    base, table, key, value, field_text = INVALID[case]
    data = tomllib.loads(base)
    if not key:
        if value is DELETE:
            del data[table]
        else:
            data[table] = value
    elif value is DELETE:
        del data[table][key]
    else:
        data[table][key] = value
    with pytest.raises(InvalidPackage) as info:
        parse_manifest(data)
    assert field_text in str(info.value)


# -- load_manifest on a directory --------------------------------------------------------------


def make_package(root: Path, toml: str = CODE_TOML) -> Path:
    """A small code package: the Echo WSDL, a module, a subdirectory, an executable file."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dynasoar.toml").write_text(toml)
    shutil.copy(ECHO / "Echo.wsdl", root / "Echo.wsdl")
    (root / "echo_service.py").write_text("def application(environ, start_response):\n    ...\n")
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "table.bin").write_bytes(bytes(range(256)) * 4)
    (root / "data" / "Grüße.txt").write_text("é\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    return root


def test_load_manifest_of_a_package(tmp_path: Path) -> None:
    m = load_manifest(make_package(tmp_path / "pkg"))
    assert m.name == "Echo" and m.code == CodeSection("echo_service:application")


def test_load_manifest_accepts_a_package_module(tmp_path: Path) -> None:
    root = make_package(tmp_path / "pkg", CODE_TOML.replace("echo_service:", "svc.web:"))
    (root / "svc" / "web").mkdir(parents=True)
    (root / "svc" / "__init__.py").write_text("")
    (root / "svc" / "web" / "__init__.py").write_text("application = None\n")
    assert load_manifest(root).code == CodeSection("svc.web:application")


@pytest.mark.parametrize(
    ("damage", "field_text"),
    [
        (lambda root: (root / "dynasoar.toml").unlink(), "dynasoar.toml"),
        (lambda root: (root / "dynasoar.toml").write_text("[service\nname="), "TOML"),
        (lambda root: (root / "dynasoar.toml").write_bytes(b"\xff\xfe[service]"), "TOML"),
        (lambda root: (root / "Echo.wsdl").unlink(), "wsdl"),
        (lambda root: (root / "echo_service.py").unlink(), "app"),
        (lambda root: ((root / "Echo.wsdl").unlink(), (root / "Echo.wsdl").mkdir()), "wsdl"),
    ],
    ids=["no-manifest", "bad-toml", "not-utf8", "no-wsdl", "no-module", "wsdl-is-a-dir"],
)
def test_load_manifest_refusals(
    tmp_path: Path, damage: Callable[[Path], object], field_text: str
) -> None:
    root = make_package(tmp_path / "pkg")
    damage(root)
    with pytest.raises(InvalidPackage, match=field_text.replace(".", r"\.")):
        load_manifest(root)


def test_load_manifest_refuses_a_wsdl_symlink_out_of_the_package(tmp_path: Path) -> None:
    outside = tmp_path / "secret.wsdl"
    outside.write_text("<secret/>")
    root = make_package(tmp_path / "pkg")
    (root / "Echo.wsdl").unlink()
    (root / "Echo.wsdl").symlink_to(outside)
    with pytest.raises(InvalidPackage, match="wsdl"):
        load_manifest(root)


def test_load_manifest_of_a_vm_package_needs_the_disk(tmp_path: Path) -> None:
    root = tmp_path / "vm"
    (root / "wsdl").mkdir(parents=True)
    (root / "dynasoar.toml").write_text(VM_TOML)
    shutil.copy(ECHO / "Echo.wsdl", root / "wsdl" / "Echo.wsdl")
    with pytest.raises(InvalidPackage, match="disk"):
        load_manifest(root)
    (root / "images").mkdir()
    (root / "images" / "disk.qcow2").write_bytes(b"QFI\xfb")
    (root / "boot").mkdir()
    (root / "boot" / "vmlinuz").write_bytes(b"kernel")
    with pytest.raises(InvalidPackage, match="initrd"):
        load_manifest(root)
    (root / "boot" / "initrd.img").write_bytes(b"initrd")
    assert load_manifest(root).kind == "vm"
    # images that travel beside the archive need not be in it
    external = frozenset({"images/disk.qcow2", "boot/vmlinuz", "boot/initrd.img"})
    for name in external:
        (root / name).unlink()
    assert load_manifest(root, external=external).image_files == [
        "images/disk.qcow2", "boot/vmlinuz", "boot/initrd.img"
    ]


# -- pack / unpack -----------------------------------------------------------------------------


def tree(root: Path) -> dict[str, tuple[bytes | None, bool]]:
    """Relative path → (content or None for a directory, executable?)."""
    out: dict[str, tuple[bytes | None, bool]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        executable = bool(path.stat().st_mode & 0o100)
        out[rel] = (None if path.is_dir() else path.read_bytes(), executable and path.is_file())
    return out


def test_pack_then_unpack_round_trip(tmp_path: Path) -> None:
    src = make_package(tmp_path / "src")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "echo_service.cpython-311.pyc").write_bytes(b"junk")
    archive = pack(src, tmp_path / "pkg.tar.gz")
    assert archive.read_bytes()[:2] == b"\x1f\x8b"
    root = unpack(archive, tmp_path / "out")
    assert root == tmp_path / "out"
    expected = tree(src)
    del expected["__pycache__"], expected["__pycache__/echo_service.cpython-311.pyc"]
    assert tree(root) == expected
    assert load_manifest(root).name == "Echo"


def test_pack_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_package(tmp_path / "src")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)
    first = pack(src, tmp_path / "a" / "package.tar.gz").read_bytes()
    monkeypatch.setattr(time, "time", lambda: 1_700_000_100.0)  # packed again later
    second = pack(src, tmp_path / "b" / "package.tar.gz").read_bytes()
    assert first == second


def test_pack_refuses_a_directory_without_manifest(tmp_path: Path) -> None:
    src = make_package(tmp_path / "src")
    (src / "dynasoar.toml").unlink()
    with pytest.raises(InvalidPackage, match=r"dynasoar\.toml"):
        pack(src, tmp_path / "pkg.tar.gz")


def test_pack_refuses_a_symlink(tmp_path: Path) -> None:
    src = make_package(tmp_path / "src")
    (src / "link").symlink_to("/etc/passwd")
    with pytest.raises(InvalidPackage, match="link"):
        pack(src, tmp_path / "pkg.tar.gz")


def zip_dir(src: Path, out: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, prefix + path.relative_to(src).as_posix())
    return out


def test_unpack_zip(tmp_path: Path) -> None:
    src = make_package(tmp_path / "src")
    root = unpack(zip_dir(src, tmp_path / "pkg.zip"), tmp_path / "out")
    assert tree(root) == tree(src)


@pytest.mark.parametrize("kind", ["tar.gz", "tar", "zip"])
def test_a_package_nested_in_one_top_level_directory(tmp_path: Path, kind: str) -> None:
    src = make_package(tmp_path / "echo-1.0")
    archive = tmp_path / f"pkg.{kind}"
    if kind == "zip":
        zip_dir(src, archive, prefix="echo-1.0/")
    else:
        with tarfile.open(archive, "w:gz" if kind == "tar.gz" else "w") as tar:
            tar.add(src, arcname="echo-1.0")
    root = unpack(archive, tmp_path / "out")
    assert root == tmp_path / "out" / "echo-1.0"
    assert tree(root) == tree(src)


def test_a_tar_made_with_dot_entries(tmp_path: Path) -> None:
    # `tar -C pkg -czf pkg.tar.gz .` names members "./", "./dynasoar.toml", ...
    src = make_package(tmp_path / "src")
    archive = tmp_path / "pkg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname=".")
    root = unpack(archive, tmp_path / "out")
    assert tree(root) == tree(src)


# -- refusals ----------------------------------------------------------------------------------


def assert_nothing_left(dest: Path) -> None:
    assert not dest.exists() or not any(dest.iterdir()), sorted(dest.rglob("*"))


def tar_with(tmp_path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    """A tar.gz with a valid package first, then ``members``."""
    archive = tmp_path / "evil.tar.gz"
    src = make_package(tmp_path / "src")
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(src.rglob("*")):
            tar.add(path, arcname=path.relative_to(src).as_posix(), recursive=False)
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return archive


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", **attrs: Any
           ) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind == tarfile.REGTYPE:
        info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data if kind == tarfile.REGTYPE else None


TAR_REFUSALS = {
    "dotdot": [member("../escaped.txt")],
    "dotdot-deep": [member("data/../../escaped.txt")],
    "dotdot-backslash": [member("..\\escaped.txt")],
    "absolute": [member("/tmp/dynasoar-escaped.txt")],
    "symlink": [member("link", tarfile.SYMTYPE, linkname="/etc/passwd")],
    "symlink-relative": [member("link", tarfile.SYMTYPE, linkname="../../outside")],
    "hardlink": [member("hard", tarfile.LNKTYPE, linkname="/etc/passwd")],
    "hardlink-inside": [member("hard", tarfile.LNKTYPE, linkname="echo_service.py")],
    "fifo": [member("pipe", tarfile.FIFOTYPE)],
    "char-device": [member("null", tarfile.CHRTYPE, devmajor=1, devminor=3)],
    "block-device": [member("sda", tarfile.BLKTYPE, devmajor=8, devminor=0)],
    "name-too-long": [member("d/" * 600 + "f")],
}


@pytest.mark.parametrize("case", TAR_REFUSALS)
def test_tar_refusals_leave_nothing(tmp_path: Path, case: str) -> None:
    archive = tar_with(tmp_path, *TAR_REFUSALS[case])
    dest = tmp_path / "out"
    with pytest.raises(InvalidPackage):
        unpack(archive, dest)
    assert_nothing_left(dest)
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/dynasoar-escaped.txt").exists()


def zip_with(tmp_path: Path, *members: tuple[zipfile.ZipInfo, bytes]) -> Path:
    archive = tmp_path / "evil.zip"
    src = make_package(tmp_path / "src")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, path.relative_to(src).as_posix())
        for info, data in members:
            zf.writestr(info, data)
    return archive


def zmember(name: str, mode: int = stat.S_IFREG | 0o644, data: bytes = b"x"
            ) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: external_attr carries st_mode
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info, data


ZIP_REFUSALS = {
    "dotdot": [zmember("../escaped.txt")],
    "dotdot-deep": [zmember("data/../../escaped.txt")],
    "dotdot-backslash": [zmember("..\\escaped.txt")],
    "absolute": [zmember("/tmp/dynasoar-escaped.txt")],
    "symlink": [zmember("link", stat.S_IFLNK | 0o777, b"/etc/passwd")],
    "symlink-relative": [zmember("link", stat.S_IFLNK | 0o777, b"../../outside")],
    "fifo": [zmember("pipe", stat.S_IFIFO | 0o644, b"")],
    "char-device": [zmember("null", stat.S_IFCHR | 0o644, b"")],
    "socket": [zmember("sock", stat.S_IFSOCK | 0o644, b"")],
}


@pytest.mark.parametrize("case", ZIP_REFUSALS)
def test_zip_refusals_leave_nothing(tmp_path: Path, case: str) -> None:
    archive = zip_with(tmp_path, *ZIP_REFUSALS[case])
    dest = tmp_path / "out"
    with pytest.raises(InvalidPackage):
        unpack(archive, dest)
    assert_nothing_left(dest)
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/dynasoar-escaped.txt").exists()


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_too_many_files(tmp_path: Path, kind: str) -> None:
    src = make_package(tmp_path / "src")
    for i in range(30):
        (src / "data" / f"f{i}").write_text(str(i))
    archive = tmp_path / f"pkg.{kind}"
    if kind == "zip":
        zip_dir(src, archive)
    else:
        pack(src, archive)
    dest = tmp_path / "out"
    with pytest.raises(PayloadTooLarge, match="20 files"):
        unpack(archive, dest, UnpackLimits(max_files=20))
    assert_nothing_left(dest)
    # The same archive within the limit unpacks.
    assert load_manifest(unpack(archive, tmp_path / "ok", UnpackLimits(max_files=100)))


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_expanded_size_over_the_limit_bomb(tmp_path: Path, kind: str) -> None:
    big = 16 << 20  # 16 MiB of zeros compresses to a few KiB
    archive = tmp_path / f"bomb.{kind}"
    if kind == "zip":
        archive = zip_with(tmp_path, zmember("data/zeros", data=bytes(big)))
    else:
        archive = tar_with(tmp_path, member("data/zeros", data=bytes(big)))
    assert archive.stat().st_size < 200_000
    dest = tmp_path / "out"
    with pytest.raises(PayloadTooLarge):
        unpack(archive, dest, UnpackLimits(max_bytes=4 << 20))
    assert_nothing_left(dest)


def test_size_limit_counts_all_files_together(tmp_path: Path) -> None:
    # Many members each under the limit, together over it.
    members = [member(f"data/part{i}", data=bytes(300_000)) for i in range(8)]
    archive = tar_with(tmp_path, *members)
    dest = tmp_path / "out"
    with pytest.raises(PayloadTooLarge):
        unpack(archive, dest, UnpackLimits(max_bytes=2_000_000))
    assert_nothing_left(dest)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_missing_manifest_leaves_nothing(tmp_path: Path, kind: str) -> None:
    src = make_package(tmp_path / "src")
    (src / "dynasoar.toml").unlink()
    archive = tmp_path / f"pkg.{kind}"
    if kind == "zip":
        zip_dir(src, archive)
    else:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(src, arcname=".")
    dest = tmp_path / "out"
    with pytest.raises(InvalidPackage, match=r"dynasoar\.toml"):
        unpack(archive, dest)
    assert_nothing_left(dest)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_manifest_too_deep_is_refused(tmp_path: Path, kind: str) -> None:
    src = make_package(tmp_path / "src")
    archive = tmp_path / f"pkg.{kind}"
    if kind == "zip":
        zip_dir(src, archive, prefix="a/b/")
    else:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(src, arcname="a/b")
    with pytest.raises(InvalidPackage, match=r"dynasoar\.toml"):
        unpack(archive, tmp_path / "out")


WORDS = " ".join(random.Random(7).choice(["alpha", "beta", "<x/>"]) for _ in range(20_000))


def zip_member_flipped(stored: bool) -> bytes:
    """A zip whose data/words.txt is damaged: a flipped byte in a stored member (its CRC-32
    no longer matches), or a deflated member whose first block has the reserved type 11."""
    buf = io.BytesIO()
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buf, "w", method) as zf:
        zf.writestr("dynasoar.toml", CODE_TOML)
        zf.writestr("data/words.txt", WORDS)
    data = bytearray(buf.getvalue())
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("data/words.txt")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    if stored:
        data[start + 1000] ^= 0xFF
    else:
        data[start] |= 0b110  # BTYPE = 11: "invalid block type"
    return bytes(data)


def damaged(tmp_path: Path, how: str) -> Path:
    src = make_package(tmp_path / "src")
    good_tar = pack(src, tmp_path / "good.tar.gz").read_bytes()
    good_zip = zip_dir(src, tmp_path / "good.zip").read_bytes()
    if how == "truncated-tar.gz":
        data = good_tar[: len(good_tar) // 2]
    elif how == "corrupt-tar.gz":
        data = good_tar[:40] + bytes(b ^ 0x5A for b in good_tar[40:200]) + good_tar[200:]
    elif how == "truncated-zip":
        data = good_zip[: len(good_zip) - 40]
    elif how == "zip-bad-crc":
        data = zip_member_flipped(stored=True)
    elif how == "gzip-of-garbage":
        data = gzip.compress(b"this is not a tar archive at all" * 100)
    else:
        data = {
            "text": b"just some text, not an archive\n",
            "empty": b"",
            "xml": b"<?xml version='1.0'?><definitions/>",
            "pk-prefix-only": b"PK\x03\x04garbage",
        }[how]
    archive = tmp_path / "damaged.pkg"
    archive.write_bytes(data)
    return archive


@pytest.mark.parametrize(
    "how",
    [
        "truncated-tar.gz", "corrupt-tar.gz", "truncated-zip", "zip-bad-crc",
        "gzip-of-garbage", "text", "empty", "xml", "pk-prefix-only",
    ],
)
def test_damaged_or_foreign_files_are_invalid_packages(tmp_path: Path, how: str) -> None:
    archive = damaged(tmp_path, how)
    dest = tmp_path / "out"
    with pytest.raises(InvalidPackage):
        unpack(archive, dest)
    assert_nothing_left(dest)


def test_unpacked_files_are_not_setuid_or_world_writable(tmp_path: Path) -> None:
    archive = tar_with(tmp_path, member("data/suid", data=b"#!/bin/sh\n", mode=0o6777))
    root = unpack(archive, tmp_path / "out")
    mode = os.stat(root / "data" / "suid").st_mode
    assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH)


def test_zip_member_with_broken_deflate_data(tmp_path: Path) -> None:
    archive = tmp_path / "broken.zip"
    archive.write_bytes(zip_member_flipped(stored=False))
    dest = tmp_path / "out"
    with pytest.raises(InvalidPackage):
        unpack(archive, dest)
    assert_nothing_left(dest)


def test_tar_gz_with_a_corrupted_member_is_refused(tmp_path: Path) -> None:
    blob = random.Random(5).randbytes(200_000)  # incompressible: deflate stores it verbatim
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(
        fileobj=gz, mode="w"
    ) as tar:
        for name, content in (("dynasoar.toml", CODE_TOML.encode()), ("data/blob", blob)):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    data = bytearray(buf.getvalue())
    where = data.find(blob[100_000:100_032])
    assert where > 0
    data[where] ^= 0xFF
    archive = tmp_path / "corrupted.tar.gz"
    archive.write_bytes(bytes(data))
    dest = tmp_path / "out"
    with pytest.raises(InvalidPackage):
        unpack(archive, dest)
    assert_nothing_left(dest)
