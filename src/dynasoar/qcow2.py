"""Reading the header of a qcow2 image: is it an overlay, and on which backing file?

Only what a publisher needs to find a differencing disk's base image; qemu-img does the rest.
(QEMU's qcow2 format: a big-endian header, magic "QFI\\xfb", the backing file name stored at
``backing_file_offset`` with ``backing_file_size`` bytes.)"""

from __future__ import annotations

import struct
from pathlib import Path

from dynasoar.errors import InvalidPackage

MAGIC = b"QFI\xfb"
_HEADER = struct.Struct(">4sIQI")  # magic, version, backing_file_offset, backing_file_size
MAX_NAME = 1023  # qemu's own limit


def is_qcow2(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == MAGIC


def backing_file(path: Path) -> Path | None:
    """The backing file an overlay names (resolved against the overlay's directory)."""
    with path.open("rb") as f:
        header = f.read(_HEADER.size)
        if len(header) < _HEADER.size or header[:4] != MAGIC:
            raise InvalidPackage(f"{path.name} is not a qcow2 image")
        _, version, offset, size = _HEADER.unpack(header)
        if version not in (2, 3):
            raise InvalidPackage(f"{path.name}: qcow2 version {version} is not supported")
        if offset == 0 or size == 0:
            return None
        if size > MAX_NAME:
            raise InvalidPackage(f"{path.name}: backing file name of {size} bytes")
        f.seek(offset)
        name = f.read(size).decode("utf-8", "strict")
    return (path.parent / name).resolve()
