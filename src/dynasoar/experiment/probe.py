"""Calibration of a shaped link, measured between two namespaces: TCP round trip and bulk
goodput. The listening socket is opened in the far namespace; the client runs in the near one."""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from dynasoar.experiment.netns import NamespaceThread

CHUNK = 1 << 18


@dataclass(frozen=True)
class Calibration:
    rtt: float  # seconds, median TCP round trip of one byte
    goodput_bit: float  # bits per second of a bulk transfer


def _listen(address: str) -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, 0))
    server.listen(8)
    return server


def _serve(server: socket.socket) -> None:
    """'e': echo every byte back until the peer closes; 's': swallow, then answer b"k"."""
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            mode = conn.recv(1)
            while data := conn.recv(CHUNK):
                if mode == b"e":
                    conn.sendall(data)
            if mode == b"s":
                with contextlib.suppress(OSError):
                    conn.sendall(b"k")


@contextlib.contextmanager
def listener(far: NamespaceThread, address: str) -> Iterator[tuple[str, int]]:
    """A probe server on ``address`` inside ``far``'s namespace; yields (address, port)."""
    server = far.run(_listen, address)
    thread = threading.Thread(target=_serve, args=(server,), daemon=True)
    thread.start()
    try:
        yield server.getsockname()
    finally:
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(5)


def round_trips(target: tuple[str, int], count: int = 10) -> list[float]:
    with socket.create_connection(target, timeout=10) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sendall(b"e")
        times = []
        for _ in range(count):
            started = time.perf_counter()
            conn.sendall(b"x")
            if not conn.recv(1):
                raise ConnectionError("the probe server closed the connection")
            times.append(time.perf_counter() - started)
        conn.shutdown(socket.SHUT_WR)
        return times


def goodput(target: tuple[str, int], size: int) -> float:
    """Bits per second of sending ``size`` bytes until the server confirms it has them all."""
    block = bytes(CHUNK)
    with socket.create_connection(target, timeout=120) as conn:
        conn.sendall(b"s")
        started = time.perf_counter()
        sent = 0
        while sent < size:
            conn.sendall(block[: min(CHUNK, size - sent)])
            sent += min(CHUNK, size - sent)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)
        return size * 8 / (time.perf_counter() - started)


def calibrate(near: NamespaceThread, far: NamespaceThread, address: str, size: int) -> Calibration:
    """Round trip and goodput from ``near`` to ``address`` served in ``far``."""
    with listener(far, address) as target:
        rtts = near.run(round_trips, target, 10)
        bits = near.run(goodput, target, size)
    return Calibration(statistics.median(rtts), bits)
