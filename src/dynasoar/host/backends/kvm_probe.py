"""Whether KVM boots guests on this machine, remembered per machine boot.

On these machines /dev/kvm can be a paravirtual variant on which a stock kernel hangs, so KVM is
used only after a probe boot under it served (``--accel auto``). The verdict is kept in a small
file keyed by the kernel's boot id: it holds until the machine reboots, across HP restarts."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

from dynasoar.errors import DynasoarError

log = logging.getLogger(__name__)
T = TypeVar("T")

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


def probe_boot(
    verdicts: KvmVerdicts,
    boot: Callable[[Literal["tcg", "kvm"], float], T],
    deadline: float,
    probe_seconds: float,
) -> T:
    """Boot under ``--accel auto``: KVM or TCG as the verdict says; without one yet, the probe.
    ``boot(accel, deadline)`` boots and waits until the guest serves."""
    verdict = verdicts.get()
    if verdict is not None:
        return boot("kvm" if verdict else "tcg", deadline)
    # The probe: this very deployment, booted under KVM within a bound. If it serves, KVM
    # works; if it does not but TCG then does, KVM does not. A package that fails under both
    # says nothing about KVM, so nothing is remembered.
    probe_deadline = min(deadline, time.monotonic() + probe_seconds)
    try:
        running = boot("kvm", probe_deadline)
    except DynasoarError as exc:
        log.warning("KVM probe boot failed (%s); using TCG", exc.reason.splitlines()[0])
    else:
        verdicts.put(True)
        return running
    running = boot("tcg", deadline)
    verdicts.put(False)
    return running
