"""VM snapshots as they are kept and as they travel: a guest's memory state and the disk layers
it wrote, on top of its package's images, described by a small document whose SHA-256 is the
snapshot's identity.

Two kinds, one format:

- an *image* snapshot: a guest of one package saved just after it first answered its readiness
  probe, before any message reached it. Any number of fresh copies start from it instead of
  booting (each with its own disk overlay on top of the snapshot's layers, its own port).
- a *state* snapshot: one deployment's guest, paused and saved to move to another host. It is
  restored once, and never replaced by a boot (that would be an empty guest).

The parts (memory, layers) are content-addressed files like images, kept in the same stores
(:mod:`dynasoar.images`) and shipped by digest, only to a receiver that lacks them. A restore
needs the same QEMU machine type, CPU model and accelerator the snapshot was taken with
(:class:`Platform`). The descriptor's digest covers every field, the parts' digests included,
so a part that was altered or cut short is refused when its digest is checked on arrival.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from lxml import etree

from dynasoar import ns
from dynasoar.errors import InvalidRequest
from dynasoar.images import SHA256_RE, ImageRef, IncomingImage

_D = f"{{{ns.DYN}}}"
KINDS = ("image", "state")
#: A descriptor's fields are short; anything longer is not one of ours.
MAX_FIELD = 256


@dataclass(frozen=True)
class Platform:
    """What a restore needs of the host: the QEMU machine type (canonical, e.g.
    ``pc-i440fx-7.2``), the CPU model the guest saw (``maximum``, ``host-model``, ...) and the
    accelerator (``tcg`` or ``kvm``)."""

    machine: str
    cpu: str
    accel: str

    def __str__(self) -> str:
        return f"machine type {self.machine}, CPU {self.cpu}, {self.accel}"


@dataclass(frozen=True)
class Snapshot:
    kind: str  # "image" or "state"
    service: str
    version: str
    #: the package it is a guest of: its SHA-256 and its images' (name, SHA-256)
    package: str
    images: tuple[tuple[str, str], ...]
    platform: Platform
    memory_mib: int
    vcpus: int
    #: the guest's memory state (a QEMU migration stream)
    memory: ImageRef
    #: disk overlays above the package's disk, lowest first, each written by the guest
    layers: tuple[ImageRef, ...]
    taken: str  # ISO 8601, UTC

    @property
    def parts(self) -> tuple[ImageRef, ...]:
        return (self.memory, *self.layers)

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)

    @property
    def key(self) -> str:
        return package_key(self.package, self.images)

    def to_json(self) -> dict[str, Any]:
        def ref(r: ImageRef) -> list[object]:
            return [r.name, r.sha256, r.size]

        return {
            "kind": self.kind,
            "service": self.service,
            "version": self.version,
            "package": self.package,
            "images": [list(i) for i in self.images],
            "platform": [self.platform.machine, self.platform.cpu, self.platform.accel],
            "memory_mib": self.memory_mib,
            "vcpus": self.vcpus,
            "memory": ref(self.memory),
            "layers": [ref(layer) for layer in self.layers],
            "taken": self.taken,
        }

    def canonical(self) -> bytes:
        """The descriptor as it is stored and hashed: sorted keys, no spaces."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        """A descriptor read back (raises ValueError / KeyError / TypeError when it is not)."""

        def ref(item: list[Any]) -> ImageRef:
            name, sha256, size = item
            return ImageRef(str(name), _digest(str(sha256)), int(size))

        machine, cpu, accel = data["platform"]
        return checked(
            cls(
                kind=str(data["kind"]),
                service=str(data["service"]),
                version=str(data["version"]),
                package=_digest(str(data["package"])),
                images=tuple((str(n), _digest(str(s))) for n, s in data["images"]),
                platform=Platform(str(machine), str(cpu), str(accel)),
                memory_mib=int(data["memory_mib"]),
                vcpus=int(data["vcpus"]),
                memory=ref(data["memory"]),
                layers=tuple(ref(layer) for layer in data["layers"]),
                taken=str(data["taken"]),
            )
        )

    @classmethod
    def parse(cls, data: bytes) -> Snapshot:
        try:
            loaded = json.loads(data)
            if not isinstance(loaded, dict):
                raise ValueError("not an object")
            return cls.from_json(loaded)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a snapshot descriptor: {exc}") from exc


@dataclass(frozen=True)
class IncomingSnapshot:
    """A snapshot named in a Deploy, with the attachments of the parts sent along."""

    snapshot: Snapshot
    required: bool  # restore or fail (a moving state): never a boot instead
    parts: tuple[IncomingImage, ...]


@dataclass
class SnapshotStats:
    """A Host Provider's snapshots, as its Status tells them."""

    held: int = 0  # image snapshots held (complete)
    bytes: int = 0  # their parts' bytes
    taken: int = 0  # snapshots taken there since it started
    restored: int = 0  # deployments started from a snapshot instead of a boot
    fallbacks: int = 0  # restores that failed: the guest booted instead


def package_key(package: str, images: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> str:
    """What an image snapshot is a snapshot of: a package with exactly these images."""
    text = f"package={package.lower()}\n" + "".join(
        f"{name}={sha.lower()}\n" for name, sha in sorted(images)
    )
    return hashlib.sha256(text.encode()).hexdigest()


def checked(snapshot: Snapshot) -> Snapshot:
    """Raises ValueError when a field is out of bounds."""
    if snapshot.kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {snapshot.kind!r}")
    texts = (snapshot.service, snapshot.version, snapshot.taken, *vars(snapshot.platform).values())
    if any(not text or len(text) > MAX_FIELD for text in texts):
        raise ValueError("a text field is empty or too long")
    if not (0 < snapshot.memory_mib <= 1 << 20 and 0 < snapshot.vcpus <= 1024):
        raise ValueError("memory or vcpus out of range")
    if any(part.size < 0 for part in snapshot.parts) or len(snapshot.layers) > 64:
        raise ValueError("a part has a negative size, or there are too many layers")
    return snapshot


def _digest(text: str) -> str:
    text = text.strip().lower()
    if not SHA256_RE.match(text):
        raise ValueError(f"{text[:80]!r} is not a hex SHA-256 digest")
    return text


# -- on the wire (dyn:Snapshot) ----------------------------------------------------------------


def snapshot_element(
    tag: str, snapshot: Snapshot, contents: dict[str, str] | None = None, required: bool = False
) -> etree._Element:
    """A dyn:Snapshot element; ``contents`` maps a part's digest to the Content-ID of the
    attachment carrying it (parts without one travel by digest only)."""
    from dynasoar.soap.xop import xop_include

    element = etree.Element(tag, nsmap={"dyn": ns.DYN})

    def text(name: str, value: object, parent: etree._Element = element) -> None:
        etree.SubElement(parent, f"{_D}{name}").text = str(value)

    def part(name: str, ref: ImageRef) -> None:
        item = etree.SubElement(element, f"{_D}{name}")
        text("name", ref.name, item)
        text("sha256", ref.sha256, item)
        text("size", ref.size, item)
        cid = (contents or {}).get(ref.sha256)
        if cid is not None:
            etree.SubElement(item, f"{_D}content").append(xop_include(cid))

    text("sha256", snapshot.digest)
    for name in ("kind", "service", "version", "package"):
        text(name, getattr(snapshot, name))
    for image_name, sha256 in snapshot.images:
        image = etree.SubElement(element, f"{_D}image")
        text("name", image_name, image)
        text("sha256", sha256, image)
    text("machine", snapshot.platform.machine)
    text("cpu", snapshot.platform.cpu)
    text("accel", snapshot.platform.accel)
    text("memoryMiB", snapshot.memory_mib)
    text("vcpus", snapshot.vcpus)
    part("memory", snapshot.memory)
    for layer in snapshot.layers:
        part("layer", layer)
    text("taken", snapshot.taken)
    if required:
        text("required", "true")
    return element


@dataclass(frozen=True)
class Received:
    """A dyn:Snapshot as read: the descriptor (its digest checked), whether a restore is
    required (no boot instead), and the content element of each part that carries one."""

    snapshot: Snapshot
    required: bool
    contents: dict[str, etree._Element]


def read_snapshot(element: etree._Element) -> Received:
    """A dyn:Snapshot read off a message; a declared digest that is not the descriptor's is
    refused (the snapshot was altered on the way)."""

    def text(name: str, parent: etree._Element = element) -> str:
        return (parent.findtext(f"{_D}{name}") or "").strip()

    def part(item: etree._Element) -> ImageRef:
        return ImageRef(text("name", item), _digest(text("sha256", item)), int(text("size", item)))

    try:
        memory = element.find(f"{_D}memory")
        if memory is None:
            raise ValueError("no memory part")
        layers = element.findall(f"{_D}layer")
        snapshot = checked(
            Snapshot(
                kind=text("kind"),
                service=text("service"),
                version=text("version"),
                package=_digest(text("package")),
                images=tuple(
                    (text("name", i), _digest(text("sha256", i)))
                    for i in element.findall(f"{_D}image")
                ),
                platform=Platform(text("machine"), text("cpu"), text("accel")),
                memory_mib=int(text("memoryMiB")),
                vcpus=int(text("vcpus")),
                memory=part(memory),
                layers=tuple(part(layer) for layer in layers),
                taken=text("taken"),
            )
        )
    except ValueError as exc:
        raise InvalidRequest(f"the snapshot is malformed: {exc}") from exc
    declared = text("sha256").lower()
    if declared != snapshot.digest:
        raise InvalidRequest(
            f"the snapshot's digest is {snapshot.digest}, not {declared or '(none)'} as declared: "
            "it was altered on the way"
        )
    contents = {}
    for item in (memory, *layers):
        content = item.find(f"{_D}content")
        if content is not None:
            contents[part(item).sha256] = content
    return Received(snapshot, text("required") == "true", contents)
