"""The systemd units in deploy/systemd: checked by ``systemd-analyze verify`` (offline: no
systemd runs as PID 1 here; ExecStart is pointed at this checkout's venv), their hardening
scored by ``systemd-analyze security``, and the SP run for real the way the units run it:
on the socket unit's own socket (its address, its FileDescriptorName) handed over by
``systemd-socket-activate``, with the sample config, and reloaded with the unit's ExecReload
(a re-exec in place that refuses no connection)."""

from __future__ import annotations

import configparser
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dynasoar.paths import SOURCE_ROOT
from dynasoar.procs import first_line

UNITS = SOURCE_ROOT / "deploy" / "systemd"
INSTALLED = "/opt/dynasoar/.venv/bin/dynasoar"
VENV_COMMAND = str(Path(sys.executable).parent / "dynasoar")

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or shutil.which("systemd-socket-activate") is None,
    reason="systemd's tools (make install)",
)


def unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


def local_copies(tmp: Path) -> list[Path]:
    """The units with ExecStart pointing at this venv, the HP template as instance 1."""
    copies = []
    for source, name in (
        ("dynasoar-sp.socket", "dynasoar-sp.socket"),
        ("dynasoar-sp.service", "dynasoar-sp.service"),
        ("dynasoar-hp@.service", "dynasoar-hp@1.service"),
    ):
        text = (UNITS / source).read_text()
        assert source.endswith(".socket") or INSTALLED in text
        (tmp / name).write_text(text.replace(INSTALLED, VENV_COMMAND))
        copies.append(tmp / name)
    return copies


@needs_systemd
def test_the_units_verify_cleanly(tmp_path: Path) -> None:
    copies = local_copies(tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "verify", *map(str, copies)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    # Unknown keys, bad values and missing commands are warnings on stderr: none is allowed.
    assert (done.returncode, done.stderr) == (0, "")


@needs_systemd
@pytest.mark.parametrize(
    ("name", "at_most"), [("dynasoar-sp.service", 20), ("dynasoar-hp@1.service", 40)]
)
def test_the_services_are_hardened(tmp_path: Path, name: str, at_most: int) -> None:
    """Exposure as systemd scores it (0 best, 100 worst): the SP, which needs nothing of the
    system, scores low; the HP keeps what its sandbox and libvirt need, and no more."""
    local_copies(tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--threshold={at_most}", name],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:]


def test_what_the_units_promise() -> None:
    socket_unit = unit("dynasoar-sp.socket")
    sp = unit("dynasoar-sp.service")
    hp = unit("dynasoar-hp@.service")
    assert socket_unit["Socket"]["FileDescriptorName"] == "dynasoar-sp"
    assert sp["Unit"]["Requires"] == "dynasoar-sp.socket"
    assert sp["Service"]["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert sp["Service"]["User"] == "dynasoar"  # its own user (dynasoar.sysusers.conf)
    assert sp["Service"]["CapabilityBoundingSet"] == ""
    assert "u dynasoar " in (UNITS / "dynasoar.sysusers.conf").read_text()
    # The HP: root, with only the capabilities its sandbox needs; /proc whole; libvirt's socket.
    service = hp["Service"]
    assert service["User"] == "root" and service["KillMode"] == "mixed"
    caps = set(service["CapabilityBoundingSet"].split())
    assert {"CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_KILL", "CAP_SYS_RESOURCE"} <= caps
    assert "CAP_SYS_ADMIN" not in caps and "CAP_NET_ADMIN" not in caps
    assert "ProtectProc" not in service and "ProcSubset" not in service
    assert "AF_UNIX" in service["RestrictAddressFamilies"].split()
    assert "--config /etc/dynasoar/hp-%i.toml" in service["ExecStart"]
    for parsed in (sp, hp):
        assert parsed["Service"]["RestartPreventExitStatus"] == "2"  # a start-up mistake


@needs_systemd
def test_the_sp_runs_on_the_socket_units_socket_and_reloads_in_place(tmp_path: Path) -> None:
    listen = unit("dynasoar-sp.socket")["Socket"]
    address, _, _ = listen["ListenStream"].rpartition(":")
    assert address == "127.0.0.1"
    with socket.socket() as probe:  # the unit's address; a free port (8080 may be taken here)
        probe.bind((address, 0))
        port = probe.getsockname()[1]
    exec_start = shlex.split(unit("dynasoar-sp.service")["Service"]["ExecStart"])
    assert exec_start[:2] == [INSTALLED, "sp"]
    assert exec_start[2:] == ["--config", "/etc/dynasoar/sp.toml"]
    command = [VENV_COMMAND, "sp", "--config", str(SOURCE_ROOT / "deploy" / "sp.toml")]
    process = subprocess.Popen(
        [
            "systemd-socket-activate",
            "-l",
            f"{address}:{port}",
            f"--fdname={listen['FileDescriptorName']}",
            # The SP gets only the environment named here (the sample's data directory is
            # /var/lib/dynasoar/sp: this test keeps its own).
            f"--setenv=DYNASOAR_DATA={tmp_path / 'sp'}",
            "--setenv=PYTHONUNBUFFERED=1",
            "--setenv=PATH",
            *command,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(200):  # until systemd-socket-activate listens (it has not forked yet)
            try:
                first = ask(address, port, "/readyz")
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        assert first.startswith(b"HTTP/1.1 200")  # the connection that started the SP
        url = f"http://{address}:{port}"
        assert first_line(process, 30) == f"dynasoar sp listening on {url}"
        pid = process.pid  # systemd-socket-activate execs the SP: this is its MAINPID
        reload = unit("dynasoar-sp.service")["Service"]["ExecReload"].replace("$MAINPID", str(pid))
        answers: list[tuple[float, bytes]] = []
        done = threading.Event()

        def keep_asking() -> None:  # connections all through the reload
            while not done.is_set():
                started = time.monotonic()
                answers.append((started, ask(address, port, "/healthz")))

        during = threading.Thread(target=keep_asking, daemon=True)
        during.start()
        reloaded = time.monotonic()
        subprocess.run(shlex.split(reload), check=True, timeout=30)
        assert first_line(process, 60) == f"dynasoar sp listening on {url}"  # again, same pid
        back = time.monotonic()
        time.sleep(0.2)
        done.set()
        during.join(timeout=60)
        assert process.poll() is None
        # Connections made while the SP restarted waited in the socket's backlog: answered.
        meanwhile = [a for started, a in answers if reloaded < started < back]
        assert meanwhile, "no connection was made during the restart"
        assert all(a.startswith(b"HTTP/1.1 200") for _, a in answers), answers
        assert ask(address, port, "/readyz").startswith(b"HTTP/1.1 200")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode(errors="replace")
    log = stderr.decode(errors="replace")
    assert "serving on the socket passed to this process" in log
    assert "serving on the socket kept over the restart" in log


def ask(host: str, port: int, path: str) -> bytes:
    """One GET on a new connection (refused connections raise: none may be)."""
    with socket.create_connection((host, port), timeout=60) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        time.sleep(0.01)
        return data
