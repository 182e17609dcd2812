"""Whether KVM boots guests on this machine, remembered per machine boot.

On these machines /dev/kvm can be a paravirtual variant on which a stock kernel hangs, so KVM is
used only after a probe boot under it served (``--accel auto``). The verdict is kept in a small
file keyed by the kernel's boot id: it holds until the machine reboots, across HP restarts."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def default_path() -> Path:
    return Path(tempfile.gettempdir()) / f"dynasoar-kvm-verdict-{os.getuid()}.json"


class KvmVerdicts:
    def __init__(self, path: Path | None = None, boot_id_file: Path = BOOT_ID) -> None:
        self.path = path or default_path()
        self._boot_id_file = boot_id_file

    def get(self) -> bool | None:
        """True / False once probed during this boot; None when not (or the file is unusable)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("boot_id") != self._boot_id():
            return None
        verdict = data.get("kvm")
        return verdict if isinstance(verdict, bool) else None

    def put(self, works: bool) -> None:
        data = json.dumps({"boot_id": self._boot_id(), "kvm": works})
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(OSError):  # a verdict not kept only costs another probe
            tmp.write_text(data, encoding="utf-8")
            os.replace(tmp, self.path)

    def _boot_id(self) -> str:
        try:
            return self._boot_id_file.read_text(encoding="utf-8").strip()
        except OSError:
            return "unknown"
