"""The libvirt backend against real libvirt + QEMU (TCG): the vm-echo guest boots from a
per-deployment overlay, answers SOAP 1.1 and 1.2 with WS-Addressing and its WSDL, and stopping
it, clearing it as a crashed run's leftover, or failing to start it leaves nothing behind."""

from __future__ import annotations

import http.client
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import zeep
from lxml import etree
from vm_support import (
    BASE,
    FULL,
    OVERLAY,
    URI,
    Deployment,
    assert_libvirtd_reaps_its_guests,
    assert_nothing_left,
    domain_names,
    edit_manifest,
    fingerprint,
    lay_out,
    output_log,
    qemu_processes,
    require_vm_host,
)

from dynasoar.errors import DeploymentFailed, DeploymentTimeout, InvalidPackage
from dynasoar.host.backends.kvm_probe import KvmVerdicts
from dynasoar.host.backends.libvirt import LibvirtBackend, VmDeployment
from dynasoar.host.logstore import ServiceLog

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
ECHO = "urn:dynasoar:samples:echo"
BOOT_SECONDS = 90.0  # TCG boots in ~5 s; generous for a loaded CI machine


@pytest.fixture(scope="module", autouse=True)
def _vm_host() -> None:
    require_vm_host()


@pytest.fixture
def backend() -> Iterator[LibvirtBackend]:
    backend = LibvirtBackend(URI, scope=f"t{uuid.uuid4().hex[:8]}")
    yield backend
    backend.clear_leftovers()  # whatever a failing test left
    backend.close()


def envelope(soap_ns: str, text: str, message_id: str) -> bytes:
    return (
        f'<s:Envelope xmlns:s="{soap_ns}" xmlns:a="{WSA}"><s:Header>'
        f"<a:To>http://127.0.0.1/Echo</a:To><a:Action>{ECHO}/Echo</a:Action>"
        f"<a:MessageID>{message_id}</a:MessageID></s:Header>"
        f'<s:Body><e:Echo xmlns:e="{ECHO}"><e:text>{text}</e:text></e:Echo></s:Body></s:Envelope>'
    ).encode()


def post(endpoint: str, body: bytes, content_type: str) -> tuple[int, str, etree._Element]:
    request = urllib.request.Request(endpoint, body, {"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers["Content-Type"], etree.fromstring(response.read())


def post_chunked(endpoint: str, body: bytes) -> tuple[int, str, etree._Element]:
    url = urlsplit(endpoint)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        pieces = (body[i : i + 100] for i in range(0, len(body), 100))
        conn.request("POST", url.path, pieces, {"Content-Type": "text/xml"}, encode_chunked=True)
        response = conn.getresponse()
        return response.status, response.headers["Content-Type"], etree.fromstring(response.read())
    finally:
        conn.close()


def assert_echoed(reply: etree._Element, soap_ns: str, text: str, message_id: str) -> None:
    assert reply.tag == f"{{{soap_ns}}}Envelope"
    header = reply.find(f"{{{soap_ns}}}Header")
    assert header is not None
    assert header.findtext(f"{{{WSA}}}RelatesTo") == message_id
    assert header.findtext(f"{{{WSA}}}Action") == f"{ECHO}/EchoResponse"
    assert (header.findtext(f"{{{WSA}}}MessageID") or "").startswith("urn:uuid:")
    assert reply.findtext(f"{{{soap_ns}}}Body/{{{ECHO}}}EchoResponse/{{{ECHO}}}text") == text


def start(
    backend: LibvirtBackend,
    deployment: Deployment,
    output: ServiceLog | None = None,
    **kwargs: object,
) -> VmDeployment:
    started = backend.start(
        uuid.uuid4().hex,
        deployment.root,
        deployment.manifest,
        time.monotonic() + BOOT_SECONDS,
        output=output or output_log(deployment),
        **kwargs,  # type: ignore[arg-type]
    )
    assert isinstance(started.handle, VmDeployment)
    assert started.endpoint == started.handle.endpoint
    return started.handle


def test_boots_serves_soap_and_stops_clean(backend: LibvirtBackend, tmp_path: Path) -> None:
    deployment = lay_out(FULL, tmp_path / "deployment")
    disk_before = fingerprint(FULL / "disk.qcow2")
    console = output_log(deployment)
    vm = start(backend, deployment, console)

    assert vm.endpoint.startswith("http://127.0.0.1:") and vm.endpoint.endswith("/Echo")
    assert (deployment.directory / "overlay.qcow2").is_file()
    assert backend.alive(vm) and vm.domain in domain_names() and qemu_processes(vm.domain)
    assert_libvirtd_reaps_its_guests(vm.domain)
    qemu = int(qemu_processes(vm.domain)[0].split()[0])

    status, content_type, reply = post(
        vm.endpoint, envelope(SOAP11, "h&#233;llo &amp; VM", "urn:uuid:one"), "text/xml"
    )
    assert (status, content_type.split(";")[0]) == (200, "text/xml")
    assert_echoed(reply, SOAP11, "héllo & VM", "urn:uuid:one")

    status, content_type, reply = post(
        vm.endpoint,
        envelope(SOAP12, "twelve", "urn:uuid:two"),
        f'application/soap+xml; charset=utf-8; action="{ECHO}/Echo"',
    )
    assert (status, content_type.split(";")[0]) == (200, "application/soap+xml")
    assert_echoed(reply, SOAP12, "twelve", "urn:uuid:two")

    # A relay may stream a body chunked: the guest de-chunks it.
    status, _, reply = post_chunked(vm.endpoint, envelope(SOAP11, "in chunks", "urn:uuid:c"))
    assert status == 200
    assert_echoed(reply, SOAP11, "in chunks", "urn:uuid:c")

    with urllib.request.urlopen(vm.endpoint + "?wsdl", timeout=10) as response:
        assert response.status == 200
        assert response.read() == (FULL / "VmEcho.wsdl").read_bytes()

    # The contract is the code Echo's: a WSDL-generated client works against the guest.
    client = zeep.Client(vm.endpoint + "?wsdl")
    service = client.create_service(f"{{{ECHO}}}VmEchoSoap11Binding", vm.endpoint)
    assert service.Echo(text="through zeep") == "through zeep"

    # The guest's serial console went to the deployment's log (drained from its FIFO).
    console.drain()
    assert "dynasoar-guest: serving" in console.chunk(1 << 20, cursor=0).text

    backend.stop(vm, grace=1.0)
    assert not backend.alive(vm)
    assert_nothing_left(vm.domain, deployment.directory)
    assert not Path(f"/proc/{qemu}").exists()  # reaped: not even a zombie is left
    assert fingerprint(FULL / "disk.qcow2") == disk_before


def test_overlay_on_a_base_leaves_the_base_untouched(
    backend: LibvirtBackend, tmp_path: Path
) -> None:
    deployment = lay_out(OVERLAY, tmp_path / "deployment")
    assert deployment.manifest.vm is not None and deployment.manifest.vm.base is not None
    cache = tmp_path / "cache"  # the base as an HP's image cache holds it: by digest
    cache.mkdir()
    cached_base = cache / deployment.manifest.vm.base.removeprefix("sha256:")
    cached_base.symlink_to(BASE)
    before = fingerprint(BASE), fingerprint(OVERLAY / "disk.qcow2")

    vm = start(backend, deployment, base_image=cached_base)
    _, _, reply = post(vm.endpoint, envelope(SOAP11, "layered", "urn:uuid:three"), "text/xml")
    assert_echoed(reply, SOAP11, "layered", "urn:uuid:three")

    # The HP crashed and restarts: its backend (same scope) clears what the old one left.
    restarted = LibvirtBackend(URI, scope=backend.scope)
    assert restarted.clear_leftovers() == [vm.domain]
    restarted.close()
    assert not backend.alive(vm)
    assert_nothing_left(vm.domain, deployment.directory)
    assert (fingerprint(BASE), fingerprint(OVERLAY / "disk.qcow2")) == before


def test_auto_accel_probes_kvm_once_and_remembers_the_verdict(tmp_path: Path) -> None:
    # On these machines a stock kernel hangs under their paravirtual KVM: the probe boot fails
    # within its bound and the deployment comes up under TCG. Elsewhere KVM may serve: then the
    # verdict is True. Either way the second deployment uses the verdict without a probe.
    verdicts = KvmVerdicts(tmp_path / "kvm.json")
    backend = LibvirtBackend(
        URI, accel="auto", scope=f"t{uuid.uuid4().hex[:8]}", kvm_verdicts=verdicts,
        kvm_probe_seconds=4.0,
    )  # fmt: skip
    try:
        first = start(backend, lay_out(FULL, tmp_path / "one"))
        verdict = verdicts.get()
        assert verdict is not None and first.accel == ("kvm" if verdict else "tcg")
        backend.stop(first, grace=1.0)

        began = time.monotonic()
        second = start(backend, lay_out(FULL, tmp_path / "two"))
        assert second.accel == first.accel
        backend.stop(second, grace=1.0)
        assert_nothing_left(first.domain, tmp_path / "one")
        assert_nothing_left(second.domain, tmp_path / "two")
        assert time.monotonic() - began < BOOT_SECONDS
    finally:
        backend.clear_leftovers()
        backend.close()


def test_a_guest_that_never_answers_times_out_and_leaves_nothing(
    backend: LibvirtBackend, tmp_path: Path
) -> None:
    deployment = edit_manifest(  # the guest serves on 8000; nothing listens on 8999
        lay_out(FULL, tmp_path / "deployment"), lambda t: t.replace("port = 8000", "port = 8999")
    )
    began = time.monotonic()
    with pytest.raises(DeploymentTimeout) as caught:
        backend.start(
            "never",
            deployment.root,
            deployment.manifest,
            time.monotonic() + 4.0,
            output=output_log(deployment),
        )

    assert time.monotonic() - began < 15
    assert "?wsdl" in caught.value.reason and "guest console:" in caught.value.reason
    assert_nothing_left(backend.domain_name("never"), deployment.directory)


def test_a_guest_that_dies_fails_fast_with_its_console(
    backend: LibvirtBackend, tmp_path: Path
) -> None:
    # A disk with an empty filesystem: the initramfs finds no /dynasoar/start and powers off.
    raw, empty = tmp_path / "empty.raw", tmp_path / "empty.qcow2"
    subprocess.run(["truncate", "-s", "8M", str(raw)], check=True)
    subprocess.run(["mke2fs", "-q", "-t", "ext2", str(raw)], check=True)
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(empty)], check=True)
    deployment = lay_out(FULL, tmp_path / "deployment")
    (deployment.root / "disk.qcow2").unlink()
    (deployment.root / "disk.qcow2").symlink_to(empty)

    began = time.monotonic()
    with pytest.raises(DeploymentFailed) as caught:
        backend.start(
            "dies",
            deployment.root,
            deployment.manifest,
            time.monotonic() + BOOT_SECONDS,
            output=output_log(deployment),
        )

    assert time.monotonic() - began < 30  # not the whole deadline
    assert "the disk has no /dynasoar/start" in caught.value.reason
    assert_nothing_left(backend.domain_name("dies"), deployment.directory)


def test_an_overlay_disk_without_a_declared_base_is_refused(
    backend: LibvirtBackend, tmp_path: Path
) -> None:
    deployment = edit_manifest(
        lay_out(OVERLAY, tmp_path / "deployment"),
        lambda t: "\n".join(line for line in t.splitlines() if not line.startswith("base")),
    )
    with pytest.raises(InvalidPackage, match="names no \\[vm\\] base"):
        backend.start(
            "nobase",
            deployment.root,
            deployment.manifest,
            time.monotonic() + 5,
            output=output_log(deployment),
        )
    assert_nothing_left(backend.domain_name("nobase"), deployment.directory)
