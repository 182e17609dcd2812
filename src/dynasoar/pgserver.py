"""A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` and ``pg_ctl`` from
Debian's ``postgresql`` package, in a temporary directory, listening on 127.0.0.1 only, run as
an unprivileged user (PostgreSQL refuses to run as root: the package's own ``postgres`` user
when we are root). Never used by an SP in production: there the operator's database is named
with ``sp --registry postgresql://...``."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: The unprivileged user a root caller runs the server as (created by the Debian package).
SERVER_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server programs are not installed (scripts/install-system.sh installs them)."""


def bindir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` are: Debian keeps them per major version, off the PATH."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is not None:
        return Path(initdb).resolve().parent
    raise PostgresUnavailable(
        "PostgreSQL is not installed: run scripts/install-system.sh (as root) or "
        "apt-get install postgresql"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """One cluster in ``directory``; ``url`` is what ``sp --registry`` takes."""

    directory: Path
    port: int
    user: str | None  # whom the server runs as (None: as ourselves)
    database: str = "dynasoar"

    @property
    def url(self) -> str:
        return f"postgresql://dynasoar@127.0.0.1:{self.port}/{self.database}"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @classmethod
    def create(cls, parent: Path | None = None) -> PostgresServer:
        """A new cluster (initdb), started, with its database made."""
        programs = bindir()
        directory = Path(tempfile.mkdtemp(prefix="dynasoar-pg-", dir=parent))
        user = SERVER_USER if os.geteuid() == 0 else None
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(directory, entry.pw_uid, entry.pw_gid)
            directory.chmod(0o700)
        server = cls(directory, _free_port(), user)
        try:
            server._run(
                [
                    str(programs / "initdb"),
                    "-D",
                    str(server.data),
                    "-U",
                    "dynasoar",
                    "--auth=trust",  # loopback only, in a directory nobody else can read
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]
            )
            conf = server.data / "postgresql.conf"
            with conf.open("a") as f:
                f.write(
                    "\nlisten_addresses = '127.0.0.1'\n"
                    f"port = {server.port}\n"
                    f"unix_socket_directories = '{directory}'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 200\n"
                )
            server.start()
            server._run(
                [
                    str(programs / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(server.port),
                    "-U",
                    "dynasoar",
                    server.database,
                ]
            )
        except BaseException:
            server.destroy()  # a half-made cluster leaves no server and no directory behind
            raise
        return server

    def _run(self, argv: list[str], timeout: float = 60.0) -> None:
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, cwd=self.directory
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr or done.stdout}")

    def start(self) -> None:
        self._run(
            [
                str(bindir() / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.directory / "server.log"),
                "-w",
                "-t",
                "30",
                "start",
            ]
        )
        self._wait_accepting()

    def stop(self, mode: str = "fast") -> None:
        """``fast`` (connections cut, clean shutdown) or ``immediate`` (as a crash)."""
        self._run([str(bindir() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def restart(self) -> None:
        self.stop()
        self.start()

    def running(self) -> bool:
        try:
            self._run([str(bindir() / "pg_ctl"), "-D", str(self.data), "status"])
        except RuntimeError:
            return False
        return True

    def _wait_accepting(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not accept connections on port {self.port}")

    def destroy(self) -> None:
        if self.running():
            try:
                self.stop("immediate")
            except RuntimeError:
                pass
        shutil.rmtree(self.directory, ignore_errors=True)
