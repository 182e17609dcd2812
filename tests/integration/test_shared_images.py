"""VM images between SPs that share a registry but not a disk, as real processes: a real
PostgreSQL registry, two real SPs, a real Host Provider on libvirt + QEMU. vm-echo published on
SP A only is deployed by SP B on its first call there: B fetches the images from A (the bytes
reach B's repository, checked), ships them and relays the answer. A request for A's images
without the registry's secret is refused (403); once A is stopped, a VM service only A held
is answered dyn:ImageUnavailable through B, within the call, never a hang."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import psycopg
import pytest

from dynasoar import ns
from dynasoar.consumer.call import call
from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.images import sha256_file
from dynasoar.provider.image_holders import ImageHolders
from dynasoar.provider.registry import Registry

from .grid import Grid
from .test_shared_registry import wait_advertised
from .vmhosts import FULL, require_vm_host
from .vmpkg import make_vm_package
from .wire import ECHO_ACTION, echo_body, envelope, post

IMAGES = ("disk.qcow2", "vmlinux", "initrd.img")


@pytest.fixture(autouse=True)
def _vm_host() -> None:
    require_vm_host()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def held(sp_data: Path) -> dict[str, str]:
    """The images in an SP's repository: digest as named -> digest of the content."""
    store = sp_data / "repository" / "images"
    return {p.name: sha256_file(p) for p in store.iterdir() if len(p.name) == 64}


def image_get(sp_url: str, digest: str, auth: str | None) -> int:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(sp_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        headers = {"X-Dynasoar-Image-Auth": auth} if auth is not None else {}
        conn.request("GET", f"/dynasoar/images/sha256:{digest}", headers=headers)
        response = conn.getresponse()
        response.read(1 << 16)
        return response.status
    finally:
        conn.close()


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-utils")
def test_a_vm_service_published_on_one_sp_is_deployed_by_another(
    grid: Grid, tmp_path: Path
) -> None:
    port = free_port()
    a = grid.start_sp()
    # B is told the URL its peers reach it at (another name for its address).
    b = grid.start_sp("--port", str(port), "--peer-url", f"http://localhost:{port}")
    grid.add_hp(b, ["--backend", "libvirt"])
    ProviderClient(a.url).publish(FULL)  # on A only: its images are in A's repository
    ProviderClient(a.url).publish(make_vm_package(tmp_path / "stub", "VmStub"))
    wait_advertised(b.url, "VmEcho")
    wait_advertised(b.url, "VmStub")
    digests = {name: sha256_file(FULL / name) for name in IMAGES}
    sp_a, sp_b = tmp_path / "sp1", tmp_path / "sp2"
    assert set(digests.values()) <= set(held(sp_a))
    assert not set(digests.values()) & set(held(sp_b))

    # The first call through B: it fetches the images from A, deploys, and answers.
    reply = call(f"{b.url}/services/VmEcho?wsdl", "Echo", ["text=through B"])
    assert reply.value == "through B"
    assert reply.headers["x-dynasoar-cold"] == "1"
    in_b = held(sp_b)
    for digest in digests.values():
        assert in_b.get(digest) == digest  # the bytes reached B, and are the image
    assert not [p for p in (sp_b / "repository" / "images").iterdir() if "partial" in p.name]
    assert "fetched image sha256:" in b.log()
    # B holds them now too, recorded under the URL it was given for its peers.
    with psycopg.connect(grid.registry) as db:
        rows = db.execute(
            "SELECT holder FROM image_holders WHERE sha256 = %s", (digests["vmlinux"],)
        ).fetchall()
    assert sorted(r[0] for r in rows) == sorted([a.url, f"http://localhost:{port}"])
    # ... and A relays to that same deployment.
    again = call(f"{a.url}/services/VmEcho?wsdl", "Echo", ["text=through A"])
    assert (again.value, again.headers["x-dynasoar-cold"]) == ("through A", "0")

    # Only SPs sharing the registry read its images: a request signed with another
    # registry's secret (its time right) is refused, as is one with none.
    kernel = digests["vmlinux"]
    stranger = Registry(tmp_path / "elsewhere.sqlite")
    assert image_get(a.url, kernel, ImageHolders(stranger).sign(kernel, a.url)) == 403
    stranger.close()
    assert image_get(a.url, kernel, None) == 403
    assert image_get(b.url, kernel, "nonsense") == 403

    # A stops: what only A held can be deployed by no one; B says so at once.
    a.stop()
    stub = post(
        f"{b.url}/services/VmStub", envelope(echo_body("x")), soap_action=ECHO_ACTION,
        timeout=60,
    )
    assert stub.status == 500, stub.body[:600]
    assert "{%s}ImageUnavailable" % ns.DYN in stub.fault_codes(), stub.body[:800]
    assert b"not running" in stub.body, stub.body[:800]
    # What B fetched it keeps serving from its own repository.
    warm = call(f"{b.url}/services/VmEcho?wsdl", "Echo", ["text=still"])
    assert warm.value == "still"
