"""Shared by the VM tests and the boot bench: the built vm-echo packages, a deployment directory
laid out as a Host Provider lays it out (package files linked to read-only "cached" images), the
libvirt daemons started, the log its output goes to, and what a finished deployment must not
leave behind."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dynasoar.host.logpump import LogPump
from dynasoar.host.logstore import LogLimits, LogStore, ServiceLog
from dynasoar.package import Manifest, parse_manifest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "deploy" / "services" / "vm-echo" / "build"
FULL = BUILD / "vm-echo"
OVERLAY = BUILD / "vm-echo-overlay"
BASE = BUILD / "base.qcow2"
URI = "qemu:///system"


def require_vm_host() -> None:
    """Skip (with what to run) when this machine cannot boot the sample; start libvirt."""
    if not (FULL / "dynasoar.toml").is_file() or not (OVERLAY / "dynasoar.toml").is_file():
        pytest.skip("the vm-echo image is not built: run `make vm-image`")
    if shutil.which("libvirtd") is None or shutil.which("qemu-system-x86_64") is None:
        pytest.skip("libvirt + QEMU are not installed: run scripts/install-vm.sh as root")
    subprocess.run(["bash", str(ROOT / "scripts" / "start-libvirt.sh")], check=True, timeout=60)


@dataclass
class Deployment:
    directory: Path
    root: Path
    manifest: Manifest


_pump: LogPump | None = None


def output_log(deployment: Deployment) -> ServiceLog:
    """The deployment's log (console output), beside its directory as a Host Provider keeps
    one, drained by one pump for the whole test run."""
    global _pump
    if _pump is None:
        _pump = LogPump()
    store = LogStore(deployment.directory.parent / "logs", LogLimits(), _pump)
    name = deployment.directory.name
    return store.open(name, deployment.manifest.name, deployment.manifest.version, "vm")


def lay_out(package: Path, directory: Path) -> Deployment:
    """``directory/pkg`` holds the manifest and WSDL as files and the images as symlinks to
    the build output, as a Host Provider links them into its image cache."""
    root = directory / "pkg"
    root.mkdir(parents=True)
    manifest = parse_manifest(tomllib.loads((package / "dynasoar.toml").read_text()))
    for item in package.iterdir():
        if item.suffix in (".toml", ".wsdl"):
            shutil.copy(item, root / item.name)
        else:
            (root / item.name).symlink_to(item)
    return Deployment(directory, root, manifest)


def edit_manifest(deployment: Deployment, edit: Callable[[str], str]) -> Deployment:
    """The deployment with its (copied) manifest rewritten by ``edit``."""
    toml = deployment.root / "dynasoar.toml"
    toml.write_text(edit(toml.read_text()))
    manifest = parse_manifest(tomllib.loads(toml.read_text()))
    return Deployment(deployment.directory, deployment.root, manifest)


def fingerprint(path: Path) -> tuple[str, int, int]:
    """Content, mtime and ctime (libvirt's chown would move ctime) of a file never to be written."""
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_ctime_ns


def domain_names() -> set[str]:
    listed = subprocess.run(
        ["virsh", "-c", URI, "list", "--all", "--name"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return {line.strip() for line in listed.splitlines() if line.strip()}


def qemu_processes(domain: str) -> list[str]:
    found = subprocess.run(
        ["pgrep", "-a", "-f", f"guest={domain},"], capture_output=True, text=True, check=False
    ).stdout
    return [line for line in found.splitlines() if "qemu-system" in line]


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("PPid:")).split()[1])


def _name(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def qemu_reaper(domain: str) -> tuple[int, str]:
    """The pid and name of the process that reaps the running guest's QEMU when it exits."""
    (line,) = qemu_processes(domain)
    return (parent := _parent(int(line.split()[0]))), _name(parent)


def assert_libvirtd_reaps_its_guests(domain: str) -> None:
    """scripts/start-libvirt.sh runs libvirtd under ``tini -s``: every QEMU libvirtd starts (and
    daemonises) is tini's to reap, at once. Where init reaps late, libvirt's destroy waits for
    it (a VM stop took 1.6 s on these machines, not 0.2 s). Under systemd, init reaps promptly:
    nothing to check."""
    reaper, name = qemu_reaper(domain)
    if reaper == 1 and _name(1) == "systemd":
        return
    daemon = int(subprocess.run(["pgrep", "-x", "-o", "libvirtd"], capture_output=True,
                                text=True, check=True).stdout.split()[0])  # fmt: skip
    assert (reaper, name) == (_parent(daemon), "tini"), (
        f"{domain}'s QEMU is reaped by {name} (pid {reaper}), not by the tini libvirtd runs "
        "under: libvirtd was started otherwise; stop it and run scripts/start-libvirt.sh"
    )


def assert_nothing_left(domain: str, directory: Path) -> None:
    assert domain not in domain_names()
    assert not (directory / "overlay.qcow2").exists()
    assert qemu_processes(domain) == []
    assert not Path(f"/var/log/libvirt/qemu/{domain}.log").exists()
