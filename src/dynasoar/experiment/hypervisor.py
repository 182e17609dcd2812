"""A libvirt daemon of the Host Provider's own, inside its namespace.

QEMU's user-mode network binds a guest's forwarded port in the network namespace QEMU runs in,
and QEMU runs where libvirtd runs: the host's libvirtd would put every guest's port in the
host's namespace, out of the Service Provider's reach. So each HP namespace gets a private
``libvirtd`` + ``virtlogd`` pair, in a mount namespace of their own (``ip netns exec`` makes
one) where libvirt's state, cache, log and domain-config directories are empty tmpfs mounts:
it neither sees nor touches the host daemon's domains. libvirtd runs under ``tini -s``, which
reaps each guest's QEMU as soon as it exits (see scripts/start-libvirt.sh). Its socket lives
in our work directory, and the Host Provider connects to it with
``qemu+unix:///system?socket=...``."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from dynasoar.experiment.netns import NetworkError, in_namespace

PRIVATE_DIRS = (
    "/run/libvirt",
    "/var/lib/libvirt",
    "/var/cache/libvirt",
    "/var/log/libvirt",
    "/etc/libvirt/qemu",
)
SCRIPT = """set -e
for d in {dirs}; do mkdir -p "$d"; mount -t tmpfs -o mode=0755 dynasoar-experiment "$d"; done
virtlogd -p /run/libvirt/virtlogd.pid &
exec tini -s -- libvirtd -f {conf} -p /run/libvirt/libvirtd.pid
"""


def libvirt_available() -> bool:
    return all(
        any((Path(d) / name).exists() for d in ("/usr/sbin", "/usr/bin"))
        for name in ("libvirtd", "virtlogd", "qemu-system-x86_64", "qemu-img", "tini")
    )


class PrivateLibvirt:
    def __init__(self, ns: str, work: Path) -> None:
        self.ns = ns
        self.work = work
        self.socket_dir = work / "sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket_dir}/libvirt-sock"

    def start(self, timeout: float = 30.0) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        conf = self.work / "libvirtd.conf"
        conf.write_text(f'unix_sock_dir = "{self.socket_dir}"\n')
        log = (self.work / "libvirtd.log").open("ab")
        try:
            script = SCRIPT.format(dirs=" ".join(PRIVATE_DIRS), conf=conf)
            self.process = subprocess.Popen(
                [*in_namespace(self.ns), "bash", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # libvirtd and virtlogd: one process group to stop
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NetworkError(f"libvirtd in {self.ns} exited: {self._log_tail()}")
            if self._answers():
                return
            time.sleep(0.2)
        raise NetworkError(f"libvirtd in {self.ns} did not answer within {timeout:.0f} s")

    def _answers(self) -> bool:
        if not (self.socket_dir / "libvirt-sock").exists():
            return False
        done = subprocess.run(
            ["virsh", "-c", self.uri, "version"], capture_output=True, timeout=30, check=False
        )
        return done.returncode == 0

    def _log_tail(self) -> str:
        path = self.work / "libvirtd.log"
        return path.read_text(errors="replace")[-800:] if path.exists() else ""

    def stop(self) -> None:
        """Stop libvirtd and virtlogd (their guests are gone with the namespace's processes)."""
        process, self.process = self.process, None
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> PrivateLibvirt:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
