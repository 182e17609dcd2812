"""Sandboxing a code service: resource limits, then an unprivileged identity of its own, then the
service's command. ``python -m dynasoar.host.sandbox [--uid U --gid G] [limits] -- COMMAND...``

The Host Provider starts every code package through this launcher: when it runs as root each
deployment gets a user id of its own (no entry in /etc/passwd is needed), its directory is made
that user's and nothing else of the host's is readable to it (the HP's data, spool and keys are
root's, mode 0600/0700). Limits: CPU seconds, address space, open files and processes.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

#: Deployments run as uids from here up (well above any distribution's system and user ids).
FIRST_UID = 61000


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 24 * 3600
    memory_bytes: int = 2 << 30  # address space: Python with spyne and threads stays far below
    open_files: int = 256
    processes: int = 64

    def args(self) -> list[str]:
        return [
            "--cpu",
            str(self.cpu_seconds),
            "--memory",
            str(self.memory_bytes),
            "--files",
            str(self.open_files),
            "--procs",
            str(self.processes),
        ]


def command(inner: list[str], limits: Limits, uid: int | None) -> list[str]:
    """``inner`` wrapped in the launcher (as ``uid`` when given)."""
    ident = ["--uid", str(uid), "--gid", str(uid)] if uid is not None else []
    return [sys.executable, "-m", "dynasoar.host.sandbox", *ident, *limits.args(), "--", *inner]


def unreachable(*paths: Path) -> Path | None:
    """The first directory above ``paths`` that other users may not traverse, if any."""
    for path in paths:
        for parent in path.parents:
            if not parent.stat().st_mode & 0o001:
                return parent
    return None


def hand_over(directory: Path, uid: int) -> None:
    """Make a deployment's directory its sandbox user's, and closed to everyone else."""
    for root, dirs, files in os.walk(directory):
        os.chown(root, uid, uid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)
    os.chmod(directory, 0o700)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dynasoar-sandbox")
    parser.add_argument("--uid", type=int)
    parser.add_argument("--gid", type=int)
    parser.add_argument("--cpu", type=int, required=True)
    parser.add_argument("--memory", type=int, required=True)
    parser.add_argument("--files", type=int, required=True)
    parser.add_argument("--procs", type=int, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    inner = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not inner:
        parser.error("no command to run")
    take_identity(Limits(args.cpu, args.memory, args.files, args.procs), args.uid, args.gid)
    os.execv(inner[0], inner)
    return 127  # not reached


def take_identity(limits: Limits, uid: int | None, gid: int | None = None) -> None:
    """This process's limits, then (when given) its unprivileged identity: what a service
    runs under. A pre-started runner takes it when handed a package, before it imports any of
    the package's code (:mod:`dynasoar.host.warm`)."""
    for limit, value in (
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_NPROC, limits.processes),
    ):
        resource.setrlimit(limit, (value, value))
    if uid is not None:
        # Order matters: supplementary groups and gid while still root, the uid last.
        os.setgroups([])
        os.setgid(gid if gid is not None else uid)
        os.setuid(uid)
        os.umask(0o077)


if __name__ == "__main__":
    raise SystemExit(main())
