"""Every start-up mistake an operator can make is one line naming the fix, exit status 2, and
no traceback: real ``dynasoar sp`` / ``dynasoar hp`` processes, as an operator starts them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dynasoar.serve import bind_listener


def start(role: str, args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "dynasoar", role, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    assert done.stdout == "", done.stdout  # it never got as far as listening
    return done.returncode, done.stderr


def one_line(role: str, status: int, stderr: str) -> str:
    assert status == 2, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"dynasoar {role}: "), stderr
    return lines[0]


def files(tmp: Path) -> dict[str, str]:
    """Paths the cases below refer to: a plain file, a file that is no PEM, a broken registry,
    config files with one mistake each."""
    (tmp / "a-file").write_text("not a directory\n")
    (tmp / "garbage.pem").write_text("-----BEGIN NOTHING-----\nxx\n-----END NOTHING-----\n")
    (tmp / "broken").mkdir()
    (tmp / "broken" / "registry.sqlite").write_bytes(b"this is not a database" * 100)
    (tmp / "syntax.toml").write_text("[server]\nport = = 1\n")
    (tmp / "unknown.toml").write_text("[server]\nprot = 8080\n")
    (tmp / "misplaced.toml").write_text("[provider]\nport = 8080\n")
    (tmp / "type.toml").write_text('[server]\nport = "eighty"\n')
    (tmp / "toplevel.toml").write_text("port = 8080\n")
    return {"TMP": str(tmp)}


SP_CASES = [
    (["--port", "99999"], {}, "'99999' is not a TCP port"),
    (["--port", "-5"], {}, "'-5' is not a TCP port"),
    (["--port", "0", "--host", "no-such-host.invalid"], {}, "is not an address of this machine"),
    (["--port", "0", "--host", "192.0.2.1"], {}, "is not an address of this machine"),
    (["--grace", "soon"], {}, "argument --grace: not a duration"),
    (["--placement", "anywhere"], {}, "argument --placement: invalid choice"),
    (["--nonsense"], {}, "unrecognized arguments: --nonsense"),
    (["--hp", "not-a-url"], {}, "'not-a-url' is not an http(s) URL"),
    (["--port", "0", "--data", "TMP/a-file"], {}, "is a file, not a directory"),
    (["--port", "0", "--data", "/proc/dynasoar-test"], {}, "cannot write there"),
    (["--port", "0", "--data", "TMP/broken"], {}, "its registry (registry.sqlite) cannot be used"),
    (["--port", "0", "--key", "TMP/none.key", "--cert", "TMP/none.crt"], {}, "cannot read it"),
    (["--port", "0", "--key", "TMP/garbage.pem"], {}, "--key and --cert go together"),
    (
        ["--port", "0", "--key", "TMP/garbage.pem", "--cert", "TMP/garbage.pem"],
        {},
        "cannot load the signing key or certificate",
    ),
    (["--port", "0", "--tls-cert", "TMP/garbage.pem"], {}, "--tls-cert and --tls-key go together"),
    (
        ["--port", "0", "--tls-cert", "TMP/garbage.pem", "--tls-key", "TMP/garbage.pem"],
        {},
        "not a PEM certificate and its key",
    ),
    (["--port", "0", "--trust", "TMP/no-such-dir"], {}, "--trust TMP/no-such-dir: cannot read it"),
    (["--port", "0", "--consumer-trust", "TMP/garbage.pem"], {}, "--consumer-trust"),
    (["--config", "TMP/missing.toml"], {}, "cannot read it (No such file or directory)"),
    (["--config", "TMP/syntax.toml"], {}, "not valid TOML"),
    (["--config", "TMP/unknown.toml"], {}, "no setting [server] prot; [server] has host, port"),
    (["--config", "TMP/misplaced.toml"], {}, "port belongs in [server], not [provider]"),
    (["--config", "TMP/type.toml"], {}, "[server] port: 'eighty' is not a TCP port"),
    (["--config", "TMP/toplevel.toml"], {}, "is outside any section"),
    ([], {"DYNASOAR_PORT": "eighty"}, "$DYNASOAR_PORT='eighty': 'eighty' is not a TCP port"),
    ([], {"DYNASOAR_CONFIG": "TMP/syntax.toml"}, "not valid TOML"),
    ([], {"DYNASOAR_SCALE_AT": "-1"}, "$DYNASOAR_SCALE_AT='-1'"),
]


@pytest.mark.parametrize(
    ("args", "env", "says"), SP_CASES, ids=[" ".join(c[0]) or str(c[1]) for c in SP_CASES]
)
def test_an_sp_start_up_mistake_is_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], says: str
) -> None:
    subst = files(tmp_path)

    def fill(text: str) -> str:
        return text.replace("TMP", subst["TMP"])

    status, stderr = start(
        "sp",
        [fill(a) for a in args] + ([] if "--data" in args else ["--data", str(tmp_path / "sp")]),
        {k: fill(v) for k, v in env.items()},
    )
    line = one_line("sp", status, stderr)
    assert fill(says) in line


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    taken = bind_listener("127.0.0.1", 0)
    try:
        port = str(taken.getsockname()[1])
        status, stderr = start("hp", ["--port", port, "--data", str(tmp_path)])
    finally:
        taken.close()
    line = one_line("hp", status, stderr)
    assert f"127.0.0.1:{port} is already in use" in line
    assert "choose another --port" in line


HP_CASES = [
    (["--sp", "ftp://nowhere"], "'ftp://nowhere' is not an http(s) URL"),
    (["--capacity", "0"], "argument --capacity: '0': at least 1"),
    (["--log-bytes", "1K"], "too small for a log"),
    (["--image-cache", "lots"], "not a size: 'lots'"),
    (["--data", "TMP/a-file"], "is a file, not a directory"),
    (["--libvirt-template", "TMP/none.xml"], "--libvirt-template TMP/none.xml: cannot read it"),
    (
        ["--backend", "libvirt", "--libvirt-uri", "qemu+unix:///system?socket=TMP/no.sock"],
        "--backend libvirt: cannot connect to libvirt at qemu+unix:///system",
    ),
]


@pytest.mark.parametrize(("args", "says"), HP_CASES, ids=[" ".join(c[0]) for c in HP_CASES])
def test_an_hp_start_up_mistake_is_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    subst = files(tmp_path)

    def fill(text: str) -> str:
        return text.replace("TMP", subst["TMP"])

    argv = ["--port", "0", *[fill(a) for a in args]]
    if "--data" not in args:
        argv += ["--data", str(tmp_path / "hp")]
    status, stderr = start("hp", argv)
    line = one_line("hp", status, stderr)
    assert fill(says) in line


def test_a_second_copy_on_a_port_in_use_changes_nothing_of_the_first(tmp_path: Path) -> None:
    from dynasoar.consumer.direct import deploy
    from dynasoar.paths import samples_dir
    from dynasoar.procs import start_actor

    data = tmp_path / "hp"
    first = start_actor("hp", ["--port", "0", "--data", str(data)], tmp_path / "hp.log")
    try:
        _, endpoint = deploy(samples_dir() / "echo", first.url)
        port = first.url.rpartition(":")[2]
        status, stderr = start("hp", ["--port", port, "--data", str(data)])
        assert "is already in use" in one_line("hp", status, stderr)
        import urllib.request

        with urllib.request.urlopen(endpoint + "?wsdl", timeout=30) as reply:  # still served
            assert reply.status == 200
        assert first.process.poll() is None
    finally:
        first.stop()
