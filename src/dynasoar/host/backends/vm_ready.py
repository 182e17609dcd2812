"""What the libvirt backend needs around a guest, without libvirt: the libvirt daemons started,
a free loopback port for the forward, the readiness probe, and the guest console (its FIFOs,
its tail)."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from dynasoar.errors import DeploymentFailed, DeploymentTimeout
from dynasoar.host.logstore import ServiceLog
from dynasoar.paths import SOURCE_ROOT

START_SCRIPT = SOURCE_ROOT / "scripts" / "start-libvirt.sh"
#: a probe answered by nothing waits this long; a serving busybox guest answers in ~0.1 s
PROBE_TIMEOUT = 1.0
PROBE_INTERVAL = 0.1
ALIVE_INTERVAL = 0.5
_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1bc")

_daemons_lock = threading.Lock()
_daemons_checked = False


def ensure_daemons() -> None:
    """Run scripts/start-libvirt.sh once per process: it starts virtlogd and libvirtd when they
    are not running (no systemd here) and fixes /dev/kvm's group. Quick when all is up."""
    global _daemons_checked
    with _daemons_lock:
        if _daemons_checked or not START_SCRIPT.is_file():
            return
        try:
            done = subprocess.run(
                ["bash", str(START_SCRIPT)], capture_output=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DeploymentFailed(f"{START_SCRIPT} could not run: {exc}") from exc
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip()
            raise DeploymentFailed(f"{START_SCRIPT} failed: {message}")
        _daemons_checked = True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(
    endpoint: str,
    deadline: float,
    *,
    alive: Callable[[], bool],
    describe: Callable[[], str],
) -> None:
    """Ready means the guest's endpoint answers ``GET <endpoint>?wsdl`` with 200, as the SP's
    own probe asks. Fails early when the VM is gone (it powered off or crashed)."""
    url = urlsplit(endpoint)
    host, port, target = url.hostname or "127.0.0.1", url.port or 80, f"{url.path or '/'}?wsdl"
    last = "no answer yet"
    next_alive_check = time.monotonic() + ALIVE_INTERVAL
    while time.monotonic() < deadline:
        status = _probe(host, port, target)
        if status == 200:
            return
        last = f"HTTP {status}" if isinstance(status, int) else status
        now = time.monotonic()
        if now >= next_alive_check:
            next_alive_check = now + ALIVE_INTERVAL
            if not alive():
                raise DeploymentFailed(f"the VM stopped before it served {endpoint}; {describe()}")
        time.sleep(max(0.0, min(PROBE_INTERVAL, deadline - time.monotonic())))
    raise DeploymentTimeout(
        f"the VM did not answer GET {endpoint}?wsdl in time (last: {last}); {describe()}"
    )


def _probe(host: str, port: int, target: str) -> int | str:
    conn = http.client.HTTPConnection(host, port, timeout=PROBE_TIMEOUT)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    finally:
        conn.close()


def console_tail(raw: bytes) -> str:
    """The end of the guest's serial console, on one line, for an error a person can act on."""
    text = _ANSI.sub(b"", raw).decode("utf-8", "replace").replace("\r", "")
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    return " | ".join(lines) or "(the guest printed nothing)"


def console_fifos(console: Path, output: ServiceLog) -> None:
    """The guest's serial console: QEMU writes ``console.out`` and reads ``console.in`` (nothing
    is ever typed into it). The pump holds ``console.out`` open for reading and writing, so it
    sees no end when a QEMU goes (a KVM probe boot, then TCG) and reads until released."""
    for end in (".in", ".out"):
        os.mkfifo(f"{console}{end}", 0o600)
    output.attach(os.open(f"{console}.out", os.O_RDWR | os.O_NONBLOCK))


def console_text(output: ServiceLog) -> str:
    output.drain()
    return console_tail(output.tail_bytes(800))


def unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
