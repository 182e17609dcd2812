"""The experiment's own network: network namespaces joined by veth pairs, made with iproute2.

Nothing here touches the host's interfaces, routes or addresses: each veth pair is created
with both ends already inside our namespaces (``ip link add A netns X type veth peer B netns
Y``), and every address (10.213.K.1 and .2, one /24 per link) lives only in them. Names carry
this process's id (``dsx<pid>-<role>``), so the leftovers of a run that was killed outright can
be recognised and removed by the next one. Closing kills whatever still runs inside the
namespaces (everything there was started by the experiment) and deletes them; deleting a
namespace deletes the veth ends in it."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar, cast

PREFIX = "dsx"
SUBNET = "10.213"
NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
_OURS = re.compile(rf"^{PREFIX}(\d+)-")
T = TypeVar("T")


class NetworkError(RuntimeError):
    """An iproute2 / iptables / tc command failed."""


def command(*argv: str, check: bool = True) -> str:
    """Run a network command; its stdout. Failures raise NetworkError with its stderr."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetworkError(f"{' '.join(argv)}: {exc}") from exc
    if check and done.returncode != 0:
        raise NetworkError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def in_namespace(ns: str) -> list[str]:
    """The prefix that runs a command inside namespace ``ns``."""
    return ["ip", "netns", "exec", ns]


def list_namespaces() -> list[str]:
    return [line.split()[0] for line in command("ip", "netns", "list").splitlines() if line]


def pids_in(ns: str) -> list[int]:
    out = command("ip", "netns", "pids", ns, check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def kill_all_in(ns: str, grace: float = 5.0) -> None:
    """SIGTERM every process in ``ns`` (all started by the experiment), SIGKILL after ``grace``."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        pids = [pid for pid in pids_in(ns) if pid != os.getpid()]  # a thread of ours may be in
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and set(pids_in(ns)) - {os.getpid()}:
            time.sleep(0.05)


def delete_namespace(ns: str) -> None:
    kill_all_in(ns)
    command("ip", "netns", "delete", ns, check=False)


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def remove_leftovers() -> list[str]:
    """Delete the namespaces of experiment runs whose process is gone; their names."""
    removed = []
    for ns in list_namespaces():
        match = _OURS.match(ns)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            delete_namespace(ns)
            removed.append(ns)
    return removed


def ours(pid: int | None = None) -> list[str]:
    """The namespaces that belong to the run of process ``pid`` (default: this one)."""
    tag = f"{PREFIX}{pid or os.getpid()}-"
    return [ns for ns in list_namespaces() if ns.startswith(tag)]


@dataclass(frozen=True)
class Link:
    """A veth pair: ``left`` end in namespace ``left_ns`` with ``left_addr``, and so on."""

    index: int
    left_ns: str
    right_ns: str
    left_dev: str
    right_dev: str
    left_addr: str
    right_addr: str

    def ends(self) -> tuple[tuple[str, str], tuple[str, str]]:
        """(namespace, device) of both ends."""
        return (self.left_ns, self.left_dev), (self.right_ns, self.right_dev)


@dataclass
class Namespaces:
    """The run's namespaces and links; a context manager that deletes them all on exit."""

    tag: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}")
    names: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)

    def add(self, role: str) -> str:
        if not re.fullmatch(r"[a-z0-9]{1,8}", role):
            raise ValueError(f"a namespace role is 1-8 lowercase letters or digits, not {role!r}")
        name = f"{self.tag}-{role}"
        command("ip", "netns", "add", name)
        self.names.append(name)
        command("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def link(self, left_ns: str, right_ns: str) -> Link:
        index = len(self.links) + 1
        base = f"{self.tag}l{index}"  # at most 3 + 7 + 1 + 2 + 1 = 14 characters (IFNAMSIZ 16)
        link = Link(
            index,
            left_ns,
            right_ns,
            f"{base}a",
            f"{base}b",
            f"{SUBNET}.{index}.1",
            f"{SUBNET}.{index}.2",
        )
        command(
            "ip",
            "link",
            "add",
            link.left_dev,
            "netns",
            left_ns,
            "type",
            "veth",
            "peer",
            "name",
            link.right_dev,
            "netns",
            right_ns,
        )
        self.links.append(link)
        for ns, dev, addr in (
            (left_ns, link.left_dev, link.left_addr),
            (right_ns, link.right_dev, link.right_addr),
        ):
            command("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            command("ip", "-n", ns, "link", "set", dev, "up")
        return link

    def close(self) -> None:
        for ns in reversed(self.names):
            delete_namespace(ns)
        self.names.clear()
        self.links.clear()

    def __enter__(self) -> Namespaces:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _enter(ns: str) -> None:
    """Move the calling thread (only it: a network namespace is per task) into ``ns``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"{NETNS_DIR}/{ns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"setns into {ns}: {os.strerror(code)}")
    finally:
        os.close(fd)


class NamespaceThread:
    """A worker thread that lives in one namespace: every socket the functions it runs open is
    opened there. The experiment's consumer runs its calls through one of these. The thread is
    a daemon: after a Ctrl-C the process exits even if a call it was making has not returned."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], Future[object]] | None] = (
            queue.SimpleQueue()
        )
        entered: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._serve, args=(entered,), name=f"netns-{ns}", daemon=True
        )
        self._thread.start()
        entered.result(timeout=10)

    def _serve(self, entered: Future[None]) -> None:
        try:
            _enter(self.ns)
        except OSError as exc:
            entered.set_exception(exc)
            return
        entered.set_result(None)
        while (job := self._jobs.get()) is not None:
            work, future = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(work())
                except BaseException as exc:
                    future.set_exception(exc)

    def run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        future: Future[object] = Future()
        self._jobs.put((functools.partial(fn, *args, **kwargs), future))
        while True:
            # never an unbounded wait: a signal may be delivered to another thread, and only a
            # main thread that wakes up runs its handler (Ctrl-C must not wait for a transfer)
            with contextlib.suppress(TimeoutError):
                return cast(T, future.result(timeout=0.1))

    def close(self) -> None:
        self._jobs.put(None)

    def __enter__(self) -> NamespaceThread:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
