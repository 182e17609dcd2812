"""The VM half of ``dynasoar demo``: whole guests as services. vm-echo is called cold (its first
boot, after which its host keeps a snapshot of it), undeployed, and called cold again (a copy
restored from that snapshot instead of a boot); vm-counter counts, then moves to the other host
with its count while the demo keeps calling it."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from dynasoar.consumer.call import call
from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.paths import SOURCE_ROOT

SERVICES = SOURCE_ROOT / "deploy" / "services"
VM_ECHO = SERVICES / "vm-echo" / "build" / "vm-echo"
VM_COUNTER = SERVICES / "vm-counter" / "build" / "vm-counter"


def vm_available() -> str | None:
    """Why the VM half cannot run here, or None (then libvirt's daemons are started)."""
    if not (VM_ECHO / "dynasoar.toml").is_file() or not (VM_COUNTER / "dynasoar.toml").is_file():
        return "the VM images are not built (make vm-image)"
    if shutil.which("libvirtd") is None or shutil.which("qemu-system-x86_64") is None:
        return "libvirt and QEMU are not installed (scripts/install-vm.sh)"
    started = subprocess.run(
        ["bash", str(SOURCE_ROOT / "scripts" / "start-libvirt.sh")],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if started.returncode != 0:
        return "libvirt does not start here: " + started.stderr.decode(errors="replace")[-200:]
    return None


def vm_story(say: Callable[..., None], client: ProviderClient, sp: str, hosts: list[str]) -> bool:
    say(
        "8. Publish vm-echo: a whole VM as a service",
        "a kernel, an initramfs and a disk, kept by digest; deployed as a QEMU guest",
    )
    client.publish(VM_ECHO)
    wsdl = f"{sp}/services/VmEcho?wsdl"
    booted, reply = _timed(lambda: call(wsdl, "Echo", ["text=from a booted guest"]))
    say("9. First call (cold): the guest boots")
    host = reply.headers.get("x-dynasoar-host")
    print(f"   answer {reply.render()!r} from {host} in {booted:.2f} s (images shipped, booted)")
    print("   right after it first answered, its host saved it: a snapshot (memory + disk)")
    _wait(lambda: any(h.snapshots and h.snapshots.held for h in client.call("ListHosts") or []))

    say(
        "10. Undeploy it, call again (cold): a copy restored from the snapshot",
        "no boot: the saved guest is loaded into a new QEMU with its own disk overlay and port",
    )
    client.call("Undeploy", name="VmEcho")
    restored, reply = _timed(lambda: call(wsdl, "Echo", ["text=from a restored guest"]))
    print(
        f"   answer {reply.render()!r} from {reply.headers.get('x-dynasoar-host')} in "
        f"{restored:.2f} s ({restored / booted:.2f}x the first call)"
    )
    client.call("Undeploy", name="VmEcho")

    say(
        "11. vm-counter moves to the other host while it is called",
        "a stateful guest (the count is in its memory): paused, saved, shipped, restored; "
        "calls meanwhile wait at the SP",
    )
    client.publish(VM_COUNTER)
    counter = f"{sp}/services/VmCounter?wsdl"
    first = call(counter, "Increment", [])
    source = first.headers.get("x-dynasoar-host") or ""
    (target,) = [h for h in hosts if h != source]
    caller = _Caller(counter)
    _wait(lambda: len(caller.values) >= 3)
    moved: Any = client.call("Move", name="VmCounter", host=target)
    _wait(lambda: caller.after_move(target) >= 3)
    values = caller.stop()
    in_order = values == list(range(2, len(values) + 2))
    print(f"   counted {first.value} on {source}, then kept calling: {len(values)} more calls")
    print(
        f"   moved to {moved.target} in {moved.seconds:.2f} s (calls held {moved.held:.2f} s, "
        f"{moved.bytes / (1 << 20):.0f} MiB of state shipped)"
    )
    print(
        f"   answers {values[0]}..{values[-1]}: "
        + ("every one once, in order, the count carried along" if in_order else "OUT OF ORDER")
    )
    client.call("Undeploy", name="VmCounter")
    return in_order and caller.failures == 0


class _Caller:
    """Calls Increment in a loop (the demo's consumer), one call at a time."""

    def __init__(self, wsdl: str) -> None:
        self._wsdl = wsdl
        self.values: list[int] = []
        self.hosts: list[str] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reply = call(self._wsdl, "Increment", [])
            except Exception:  # a failed call is the demo's to report, not to die of
                self.failures += 1
                continue
            self.values.append(int(reply.value))
            self.hosts.append(reply.headers.get("x-dynasoar-host") or "")

    def after_move(self, target: str) -> int:
        return self.hosts.count(target)

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(timeout=120)
        return self.values


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.monotonic()
    result = action()
    return time.monotonic() - started, result


def _wait(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the demo waited too long")
        time.sleep(0.2)
