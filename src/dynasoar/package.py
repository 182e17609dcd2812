"""Service packages: the ``dynasoar.toml`` manifest, packing a directory, and unpacking an
archive (zip or tar.gz) with no path escaping its target, no links or devices, and limits."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import stat
import tarfile
import tempfile
import tomllib
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from dynasoar.errors import InvalidPackage, PayloadTooLarge

MANIFEST = "dynasoar.toml"
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
BASE_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
APP_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class UnpackLimits:
    max_files: int = 10_000
    max_bytes: int = 1 << 30
    max_path_length: int = 1024


@dataclass(frozen=True)
class CodeSection:
    app: str

    @property
    def module(self) -> str:
        return self.app.partition(":")[0]

    @property
    def callable(self) -> str:
        return self.app.partition(":")[2]


@dataclass(frozen=True)
class VmSection:
    disk: str
    base: str | None = None
    kernel: str | None = None
    initrd: str | None = None
    port: int = 8000
    path: str = "/"
    memory_mib: int = 128
    vcpus: int = 1
    #: ``[vm] snapshot``: a host may start copies of this guest from a snapshot of it taken
    #: just after it first became ready, instead of booting (copies then share whatever the
    #: guest held at that moment: keys it generated, its RNG state until reseeded)
    snapshot: bool = True


POLICIES = ("least-loaded", "round-robin", "cheapest", "data-locality")


@dataclass(frozen=True)
class Placement:
    """What a service asks of the hosts it runs on (the optional ``[placement]`` table)."""

    policy: str | None = None  # one of POLICIES; the SP's own default when absent
    data_site: str | None = None  # the data site it needs (for "data-locality")
    labels: tuple[tuple[str, str], ...] = ()  # host labels required, e.g. trusted = "yes"
    max_replicas: int | None = None  # a stateless service's limit; the SP's default when absent
    scale_at: float | None = None  # outstanding messages per replica that call for another
    idle_timeout: float | None = None  # seconds without traffic before it is undeployed

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, ())} | {
            "labels": [list(label) for label in self.labels]
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Placement:
        labels = tuple((str(n), str(v)) for n, v in data.get("labels", []))
        return cls(**{k: v for k, v in data.items() if k != "labels"}, labels=labels)


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    kind: str
    stateless: bool
    wsdl: str
    code: CodeSection | None = None
    vm: VmSection | None = None
    placement: Placement = Placement()
    #: ``[security] require_signed_messages``: consumers' messages must be signed (WS-Security)
    require_signed: bool = False
    #: ``[service] call_timeout``: seconds a message may wait for the deployed service's reply
    #: (the Service Provider's own default when absent)
    call_timeout: float | None = None

    @property
    def image_files(self) -> list[str]:
        """A VM package's image files (disk, then kernel and initrd when given)."""
        if self.vm is None:
            return []
        return [f for f in (self.vm.disk, self.vm.kernel, self.vm.initrd) if f is not None]

    @property
    def base_sha256(self) -> str | None:
        """The hex digest of the base image a VM disk is an overlay on, if any."""
        base = self.vm.base if self.vm is not None else None
        return base.removeprefix("sha256:").lower() if base else None


def load_manifest(root: Path, external: frozenset[str] = frozenset()) -> Manifest:
    """The package's manifest, checked against its files; ``external`` names VM image files
    that travel beside the archive instead of in it."""
    path = root / MANIFEST
    if not path.is_file():
        raise InvalidPackage(f"the package has no {MANIFEST} at its root")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidPackage(f"{MANIFEST} is not valid TOML: {exc}") from exc
    manifest = parse_manifest(data)
    _require_file(root, manifest.wsdl, "[service] wsdl")
    if manifest.code is not None:
        module = manifest.code.module.replace(".", "/")
        if not ((root / f"{module}.py").is_file() or (root / module / "__init__.py").is_file()):
            raise InvalidPackage(
                f"[code] app names module {manifest.code.module!r}, not in the package"
            )
    vm = manifest.vm
    if vm is not None:
        for what, name in (("disk", vm.disk), ("kernel", vm.kernel), ("initrd", vm.initrd)):
            if name is not None and name not in external:
                _require_file(root, name, f"[vm] {what}")
    return manifest


def parse_manifest(data: dict[str, object]) -> Manifest:
    service = _table(data, "service")
    name = _str(service, "name", "service")
    if not NAME_RE.match(name):
        raise InvalidPackage(
            f"[service] name {name!r}: use letters, digits, '_', '.', '-' (max 64)"
        )
    kind = _str(service, "kind", "service")
    if kind not in ("code", "vm"):
        raise InvalidPackage(f'[service] kind must be "code" or "vm", not {kind!r}')
    stateless = service.get("stateless", True)
    if not isinstance(stateless, bool):
        raise InvalidPackage("[service] stateless must be true or false")
    code = vm = None
    if kind == "code":
        app = _str(_table(data, "code"), "app", "code")
        if not APP_RE.match(app):
            raise InvalidPackage(f'[code] app must read "module:callable", not {app!r}')
        code = CodeSection(app)
    else:
        vm = _vm_section(_table(data, "vm"))
    placement = _placement(data.get("placement"), stateless)
    call_timeout = service.get("call_timeout")
    if call_timeout is not None and (
        not isinstance(call_timeout, int | float)
        or isinstance(call_timeout, bool)
        or not 0 < call_timeout <= 86400
    ):
        raise InvalidPackage("[service] call_timeout must be a number of seconds (0 to 86400]")
    return Manifest(
        call_timeout=float(call_timeout) if call_timeout is not None else None,
        placement=placement,
        require_signed=_require_signed(data.get("security")),
        name=name,
        version=_str(service, "version", "service"),
        kind=kind,
        stateless=stateless,
        wsdl=_relative(_str(service, "wsdl", "service"), "[service] wsdl"),
        code=code,
        vm=vm,
    )


def _vm_section(vm: dict[str, object]) -> VmSection:
    path = vm.get("path", "/")
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidPackage('[vm] path must be an absolute URL path such as "/Echo"')
    kernel, initrd = _optional_file(vm, "kernel"), _optional_file(vm, "initrd")
    base = vm.get("base")
    if base is not None and not (isinstance(base, str) and BASE_RE.match(base.lower())):
        raise InvalidPackage('[vm] base must read "sha256:" and 64 hex digits (its digest)')
    snapshot = vm.get("snapshot", True)
    if not isinstance(snapshot, bool):
        raise InvalidPackage("[vm] snapshot must be true or false")
    return VmSection(
        snapshot=snapshot,
        disk=_relative(_str(vm, "disk", "vm"), "[vm] disk"),
        base=base,
        kernel=kernel,
        initrd=initrd,
        port=_positive(vm, "port", 8000),
        path=path,
        memory_mib=_positive(vm, "memory_mib", 128),
        vcpus=_positive(vm, "vcpus", 1),
    )


def _positive(table: dict[str, object], key: str, default: int) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidPackage(f"[vm] {key} must be a positive integer")
    return value


def _optional_file(table: dict[str, object], key: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidPackage(f"[vm] {key} must be a path inside the package")
    return _relative(value, f"[vm] {key}")


def _require_signed(table: object) -> bool:
    if table is None:
        return False
    if not isinstance(table, dict) or set(table) - {"require_signed_messages"}:
        raise InvalidPackage("[security] takes one key: require_signed_messages = true|false")
    value = table.get("require_signed_messages", False)
    if not isinstance(value, bool):
        raise InvalidPackage("[security] require_signed_messages must be true or false")
    return value


def _placement(table: object, stateless: bool) -> Placement:
    if table is None:
        return Placement()
    if not isinstance(table, dict):
        raise InvalidPackage("[placement] must be a table")
    unknown = set(table) - {
        "policy",
        "data_site",
        "labels",
        "max_replicas",
        "scale_at",
        "idle_timeout",
    }
    if unknown:
        raise InvalidPackage(f"[placement] has unknown keys {sorted(unknown)}")
    policy = table.get("policy")
    if policy is not None and policy not in POLICIES:
        raise InvalidPackage(f"[placement] policy must be one of {', '.join(POLICIES)}")
    site = table.get("data_site")
    if site is not None and (not isinstance(site, str) or not site):
        raise InvalidPackage("[placement] data_site must be a site name")
    labels = table.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise InvalidPackage('[placement] labels must be a table of strings: { trusted = "yes" }')
    replicas = table.get("max_replicas")
    if replicas is not None:
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
            raise InvalidPackage("[placement] max_replicas must be a positive integer")
        if replicas > 1 and not stateless:
            raise InvalidPackage("[placement] max_replicas: a stateful service runs once")
    numbers = {}
    for key in ("scale_at", "idle_timeout"):
        value = table.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
        ):
            raise InvalidPackage(f"[placement] {key} must be a positive number")
        numbers[key] = float(value) if value is not None else None
    return Placement(
        policy=policy,
        data_site=site,
        labels=tuple(sorted(labels.items())),
        max_replicas=replicas,
        **numbers,
    )


def _table(data: dict[str, object], name: str) -> dict[str, object]:
    table = data.get(name)
    if not isinstance(table, dict):
        raise InvalidPackage(f"{MANIFEST} needs a [{name}] table")
    return table


def _str(table: dict[str, object], key: str, section: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidPackage(f"[{section}] {key} is required (a non-empty string)")
    return value.strip()


def _relative(value: str, what: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or "\\" in value:
        raise InvalidPackage(f"{what} must be a path inside the package, not {value!r}")
    return str(path)


def _require_file(root: Path, relative: str, what: str) -> None:
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()) or not target.is_file():
        raise InvalidPackage(f"{what} {relative!r} is not a file in the package")


# -- archives --------------------------------------------------------------------------------


def pack(directory: Path, out: Path, exclude: frozenset[str] = frozenset()) -> Path:
    """Write ``directory`` as a deterministic .tar.gz (regular files and dirs only), leaving
    out the relative paths in ``exclude`` (a VM package's images travel separately)."""
    if not (directory / MANIFEST).is_file():
        raise InvalidPackage(f"{directory} has no {MANIFEST}")

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if "__pycache__" in info.name.split("/") or info.name.endswith(".pyc"):
            return None
        if not (info.isfile() or info.isdir()):
            raise InvalidPackage(f"{info.name}: packages hold only regular files and directories")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    # The gzip layer too: no timestamp or file name, so equal trees give equal bytes (and the
    # same SHA-256, which is what the repository and the image caches key on).
    with (
        out.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in sorted(directory.rglob("*")):
            rel = path.relative_to(directory).as_posix()
            if rel not in exclude:
                tar.add(path, arcname=rel, recursive=False, filter=clean)
    return out


def unpack(archive: Path, dest: Path, limits: UnpackLimits = UnpackLimits()) -> Path:
    """Extract ``archive`` into ``dest`` (which must be empty or absent); return the package
    root (``dest`` or its single top-level directory holding the manifest)."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with archive.open("rb") as f:
            magic = f.read(4)
        if magic.startswith(b"PK"):
            _unpack_zip(archive, dest, limits)
        elif magic.startswith(b"\x1f\x8b") or _is_tar(archive):
            _unpack_tar(archive, dest, limits)
        else:
            raise InvalidPackage("the package is neither a .zip nor a .tar.gz archive")
        return package_root(dest)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise InvalidPackage(f"the package archive is damaged: {exc}") from exc
    except (InvalidPackage, PayloadTooLarge):
        shutil.rmtree(dest, ignore_errors=True)
        raise


def package_root(dest: Path) -> Path:
    if (dest / MANIFEST).is_file():
        return dest
    entries = [p for p in dest.iterdir()]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / MANIFEST).is_file():
        return entries[0]
    raise InvalidPackage(f"the package has no {MANIFEST} at its root")


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _safe_target(dest: Path, name: str, limits: UnpackLimits) -> Path:
    if len(name) > limits.max_path_length or "\x00" in name:
        raise InvalidPackage(f"archive member name too long or invalid: {name[:80]!r}")
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise InvalidPackage(f"archive member {name!r} escapes the package directory")
    target = (dest / path).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise InvalidPackage(f"archive member {name!r} escapes the package directory")
    return target


class _Budget:
    def __init__(self, limits: UnpackLimits) -> None:
        self.limits = limits
        self.files = 0
        self.bytes = 0

    def file(self) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise PayloadTooLarge(f"the package holds more than {self.limits.max_files} files")

    def add(self, n: int) -> None:
        self.bytes += n
        if self.bytes > self.limits.max_bytes:
            raise PayloadTooLarge(f"the package expands to more than {self.limits.max_bytes} bytes")

    def expect(self, n: int) -> None:
        """Refuse up front what an archive declares it will expand to (a bomb is refused
        before a byte of it is written; the copy still counts what really comes)."""
        if self.bytes + n > self.limits.max_bytes:
            raise PayloadTooLarge(f"the package expands to more than {self.limits.max_bytes} bytes")


def _copy_limited(src: IO[bytes], target: Path, budget: _Budget, mode: int) -> None:
    read = src.read
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        while chunk := read(1 << 20):
            budget.add(len(chunk))
            out.write(chunk)


def _unpack_tar(archive: Path, dest: Path, limits: UnpackLimits) -> None:
    budget = _Budget(limits)
    with tarfile.open(archive, "r:*") as tar:
        for member in _iter_tar(tar):
            target = _safe_target(dest, member.name, limits)
            budget.file()
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                budget.expect(member.size)
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None
                _copy_limited(src, target, budget, 0o755 if member.mode & 0o111 else 0o644)
            else:
                raise InvalidPackage(
                    f"archive member {member.name!r} is a link or device; packages hold only "
                    "regular files and directories"
                )
        _drain(tar, budget)


#: What a compressed tar may hold after its end-of-archive blocks: tar pads to its record
#: size (10 KiB by default); more is a decompression bomb, not padding.
MAX_TRAILER_BYTES = 8 << 20


def _drain(tar: tarfile.TarFile, budget: _Budget) -> None:
    """Read a compressed archive to its end: only then does gzip check its CRC and length,
    so a corrupted member is refused instead of unpacked wrong. The padding read counts
    against the size budget and is bounded itself, so trailing zeros cannot make this a
    bomb (a GiB of them would cost seconds of CPU to decompress)."""
    stream = tar.fileobj
    if stream is None or not isinstance(stream, gzip.GzipFile):
        return
    trailer = 0
    while chunk := stream.read(1 << 20):
        budget.add(len(chunk))
        trailer += len(chunk)
        if trailer > MAX_TRAILER_BYTES:
            raise PayloadTooLarge(
                f"the package archive goes on for more than {MAX_TRAILER_BYTES} bytes after its end"
            )


def _iter_tar(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (member := tar.next()) is not None:
        yield member


def _unpack_zip(archive: Path, dest: Path, limits: UnpackLimits) -> None:
    budget = _Budget(limits)
    with zipfile.ZipFile(archive) as zf:
        # A zip lists its members up front, and zipfile reads no more than a member's declared
        # size: a bomb is refused before anything is written.
        members = zf.infolist()
        if len(members) > limits.max_files:
            raise PayloadTooLarge(f"the package holds more than {limits.max_files} files")
        budget.expect(sum(info.file_size for info in members))
        for info in members:
            target = _safe_target(dest, info.filename, limits)
            budget.file()
            unix_mode = info.external_attr >> 16
            if unix_mode and stat.S_IFMT(unix_mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise InvalidPackage(
                    f"archive member {info.filename!r} is a link or device; packages hold only "
                    "regular files and directories"
                )
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src:
                _copy_limited(src, target, budget, 0o755 if unix_mode & 0o111 else 0o644)


def inspect_archive(archive: Path, limits: UnpackLimits = UnpackLimits()) -> tuple[Manifest, bytes]:
    """Validate an archive by unpacking it to a scratch directory: its manifest and WSDL bytes."""
    with tempfile.TemporaryDirectory(prefix="dynasoar-inspect-") as tmp:
        root = unpack(archive, Path(tmp) / "pkg", limits)
        manifest = load_manifest(root)
        return manifest, (root / manifest.wsdl).read_bytes()
