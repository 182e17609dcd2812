"""A server's listening socket: bound here with a clear one-line error when it cannot be, or
inherited the way systemd socket activation passes it (``LISTEN_FDS``), for real under
``systemd-socket-activate``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dynasoar.procs import first_line
from dynasoar.serve import StartupError, bind_listener


def test_bind_listener_listens_on_a_free_port() -> None:
    sock = bind_listener("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("host", "port", "says"),
    [
        ("127.0.0.1", -5, "is not a TCP port"),
        ("127.0.0.1", 99999, "is not a TCP port"),
        ("no-such-host.invalid", 0, "is not an address of this machine"),
        ("192.0.2.1", 0, "is not an address of this machine"),
    ],
)
def test_bind_listener_says_what_is_wrong(host: str, port: int, says: str) -> None:
    with pytest.raises(StartupError, match=says):
        bind_listener(host, port)


def test_a_port_in_use_is_named() -> None:
    taken = bind_listener("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match=f"127.0.0.1:{port} is already in use"):
            bind_listener("127.0.0.1", port)
    finally:
        taken.close()


@pytest.mark.parametrize("args", [["--port", "PORT_IN_USE"], ["--port", "-5"]])
def test_a_start_up_mistake_is_one_line_and_exit_status_2(tmp_path: Path, args: list[str]) -> None:
    taken = bind_listener("127.0.0.1", 0)
    try:
        argv = [a.replace("PORT_IN_USE", str(taken.getsockname()[1])) for a in args]
        done = subprocess.run(
            [sys.executable, "-m", "dynasoar", "sp", "--data", str(tmp_path), *argv],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        taken.close()
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("dynasoar sp: ")
    assert "Traceback" not in done.stderr


_INHERIT = """
import os, socket, sys
from dynasoar.serve import inherited_listener
listener = socket.create_server(("127.0.0.1", 0))
os.dup2(listener.fileno(), 3)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=sys.argv[1] or str(os.getpid()))
got = inherited_listener()
print(got[0].getsockname()[1] == listener.getsockname()[1] if got else None,
      "LISTEN_FDS" in os.environ)
"""


@pytest.mark.parametrize(
    ("pid", "expected"), [("", "True False"), ("1", "None False")], ids=["ours", "another's"]
)
def test_an_inherited_socket_is_taken_only_when_passed_to_this_process(
    pid: str, expected: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _INHERIT, pid], capture_output=True, text=True, timeout=30
    )
    assert done.stdout.strip() == expected, done.stderr


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None, reason="no systemd")
def test_the_sp_serves_on_a_socket_from_systemd_socket_activate(tmp_path: Path) -> None:
    """systemd-socket-activate listens, and execs the SP (same pid) when the first connection
    comes: that connection waits in the backlog while the SP starts, and is answered."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            "systemd-socket-activate",
            "-l",
            f"127.0.0.1:{port}",
            "--fdname=dynasoar-sp",
            sys.executable,
            "-m",
            "dynasoar",
            "sp",
            "--data",
            str(tmp_path / "sp"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        conn = None
        for _ in range(100):  # until systemd-socket-activate listens
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        assert conn is not None
        with conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert conn.recv(100).startswith(b"HTTP/1.1 200")
        assert first_line(process, 30) == f"dynasoar sp listening on http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert b"serving on the socket passed to this process" in stderr
