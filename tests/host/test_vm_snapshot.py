"""Saving and restoring guests with the libvirt backend, against real libvirt + QEMU (TCG): a
guest saved just after it served runs on; copies restored from its snapshot run side by side,
each on its own port and disk overlay, with random numbers of their own; a snapshot that does
not load leaves nothing behind; a guest saved paused stays paused until resumed."""

from __future__ import annotations

import re
import shutil
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_libvirt_backend import BOOT_SECONDS, SOAP11, assert_echoed, envelope, post, start
from vm_support import (
    FULL,
    URI,
    assert_nothing_left,
    domain_names,
    lay_out,
    output_log,
    require_vm_host,
)

from dynasoar.errors import DeploymentFailed
from dynasoar.host.backends.libvirt import LibvirtBackend, VmDeployment
from dynasoar.host.backends.vm_save import Restore, extract_stream, is_stream


@pytest.fixture(scope="module", autouse=True)
def _vm_host() -> None:
    require_vm_host()


@pytest.fixture
def backend() -> Iterator[LibvirtBackend]:
    backend = LibvirtBackend(URI, scope=f"t{uuid.uuid4().hex[:8]}")
    yield backend
    backend.clear_leftovers()
    backend.close()


def restore(backend: LibvirtBackend, directory: Path, state: Restore) -> VmDeployment:
    deployment = lay_out(FULL, directory)
    started = backend.restore(
        uuid.uuid4().hex,
        deployment.root,
        deployment.manifest,
        time.monotonic() + BOOT_SECONDS,
        state,
        output=output_log(deployment),
    )
    assert isinstance(started.handle, VmDeployment)
    return started.handle


def message_id(endpoint: str, text: str) -> str:
    """Echo ``text``; the MessageID of the reply (the guest makes it from its kernel's RNG)."""
    _, _, reply = post(endpoint, envelope(SOAP11, text, f"urn:uuid:{uuid.uuid4()}"), "text/xml")
    found = reply.findtext(".//{http://www.w3.org/2005/08/addressing}MessageID") or ""
    assert re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", found), found
    return found


def saved(backend: LibvirtBackend, tmp_path: Path) -> tuple[VmDeployment, Restore]:
    """A vm-echo guest booted and saved (running on); what copies of it start from."""
    original = start(backend, lay_out(FULL, tmp_path / "original"))
    capture = backend.capture(original, pause=False)
    stream = tmp_path / "memory.stream"
    extract_stream(capture.memory, stream)
    assert is_stream(stream)
    return original, Restore(stream, (capture.layer,), capture.platform)


def test_copies_of_a_snapshot_run_side_by_side(backend: LibvirtBackend, tmp_path: Path) -> None:
    original, state = saved(backend, tmp_path)
    assert state.platform.machine.startswith("pc-")  # the alias "pc", resolved
    assert state.platform == backend.platform()
    # The original runs on after its save, now writing to a new top above the frozen layer.
    assert original.overlay.name == "overlay-1.qcow2" and state.layers[0].name == "overlay.qcow2"
    _, _, reply = post(original.endpoint, envelope(SOAP11, "still", "urn:uuid:o"), "text/xml")
    assert_echoed(reply, SOAP11, "still", "urn:uuid:o")

    one = restore(backend, tmp_path / "one", state)
    two = restore(backend, tmp_path / "two", state)
    endpoints = {original.endpoint, one.endpoint, two.endpoint}
    assert len(endpoints) == 3  # a port of its own each
    assert one.overlay != two.overlay and one.overlay.parent.name == "one"
    assert {one.domain, two.domain} <= domain_names()
    for vm, text in ((one, "first copy"), (two, "second copy")):
        _, _, reply = post(vm.endpoint, envelope(SOAP11, text, "urn:uuid:c"), "text/xml")
        assert_echoed(reply, SOAP11, text, "urn:uuid:c")
    # The copies' kernels were reseeded on their new VM generation IDs: no shared randomness.
    ids = [message_id(vm.endpoint, "rng") for vm in (one, two, original)]
    assert len(set(ids)) == 3

    for vm in (one, two):
        backend.stop(vm, grace=1.0)
        assert_nothing_left(vm.domain, vm.overlay.parent)
    _, _, reply = post(original.endpoint, envelope(SOAP11, "alone", "urn:uuid:a"), "text/xml")
    assert_echoed(reply, SOAP11, "alone", "urn:uuid:a")
    backend.stop(original, grace=1.0)
    assert_nothing_left(original.domain, original.overlay.parent)


def test_a_snapshot_that_does_not_load_leaves_nothing(
    backend: LibvirtBackend, tmp_path: Path
) -> None:
    original, state = saved(backend, tmp_path)
    layer = tmp_path / "layer.qcow2"  # kept: stopping the original deletes its own
    shutil.copy(state.layers[0], layer)
    backend.stop(original, grace=1.0)
    cut = tmp_path / "cut.stream"
    cut.write_bytes(state.memory.read_bytes()[: state.memory.stat().st_size // 3])
    directory = tmp_path / "copy"
    with pytest.raises(DeploymentFailed, match="could not load the snapshot's memory") as failed:
        restore(backend, directory, Restore(cut, (layer,), state.platform))
    assert "section" in failed.value.reason  # what QEMU said, from its log
    assert not [name for name in domain_names() if backend.scope in name]
    assert not (directory / "overlay.qcow2").exists()


def test_a_guest_saved_paused_stays_paused_until_resumed(
    backend: LibvirtBackend, tmp_path: Path
) -> None:
    vm = start(backend, lay_out(FULL, tmp_path / "vm"))
    capture = backend.capture(vm, pause=True)
    assert capture.memory.is_file() and capture.layer.is_file()
    with pytest.raises(OSError):  # paused: QEMU takes the connection, no reply comes
        urllib.request.urlopen(vm.endpoint + "?wsdl", timeout=2)
    backend.resume(vm)
    _, _, reply = post(vm.endpoint, envelope(SOAP11, "resumed", "urn:uuid:r"), "text/xml")
    assert_echoed(reply, SOAP11, "resumed", "urn:uuid:r")
    backend.stop(vm, grace=1.0)
    assert_nothing_left(vm.domain, vm.overlay.parent)
    assert not capture.memory.exists()
