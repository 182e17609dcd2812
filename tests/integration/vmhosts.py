"""For the VM snapshot and mobility tests: the built vm-echo packages, libvirt started, and the
Host Provider port spoken to directly (zeep for the plain operations, our HostClient for
Deploy with a snapshot and for GetSnapshot's MTOM reply)."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import pytest
import zeep
from lxml import etree

from dynasoar.consumer.host_client import (
    HostClient,
    PackageShipment,
    ShippedImage,
    ShippedSnapshot,
)
from dynasoar.consumer.publish import prepare
from dynasoar.images import sha256_file
from dynasoar.snapshots import Snapshot

from .hosted import with_host_client

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "deploy" / "services" / "vm-echo" / "build"
FULL = BUILD / "vm-echo"
COUNTER = ROOT / "deploy" / "services" / "vm-counter" / "build" / "vm-counter"
ECHO = "urn:dynasoar:samples:echo"
WSA = "http://www.w3.org/2005/08/addressing"


def require_vm_host() -> None:
    if not (FULL / "dynasoar.toml").is_file():
        pytest.fail("the vm-echo image is not built: `make vm-image` (make test does it)")
    subprocess.run(["bash", str(ROOT / "scripts" / "start-libvirt.sh")], check=True, timeout=60)


def hp_port(hp: str) -> Any:
    return zeep.Client(hp + "/dynasoar/HostProvider?wsdl").service


def snapshot_stats(hp: str) -> Any:
    return hp_port(hp).Status().snapshots


def listed_snapshots(hp: str) -> list[Any]:
    return list(hp_port(hp).QueryImages().snapshot or [])


def wait_for_snapshot(hp: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = listed_snapshots(hp)
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"{hp} kept no snapshot within {timeout} s")


def fetch_snapshot(hp: str, spool: Path) -> tuple[Snapshot, dict[str, Path]]:
    """The (only) snapshot ``hp`` holds, with every part as a file in ``spool``."""

    async def fetch(client: HostClient) -> tuple[Snapshot, dict[str, Path]]:
        _, listed = await client.query_cache(hp, [], timeout=30)
        (snapshot,) = listed
        return await client.get_snapshot(hp, snapshot.digest, set(), spool, timeout=120)

    return with_host_client(fetch)


def ship(
    hp: str,
    package: Path,
    snapshot: ShippedSnapshot | None = None,
    scratch: Path | None = None,
) -> tuple[str, str]:
    """Deploy ``package`` straight on ``hp`` (images and all), with ``snapshot`` if given."""
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        upload = prepare(package, Path(tmp))
        assert upload.manifest is not None
        shipment = PackageShipment(
            service=upload.manifest.name,
            version=upload.manifest.version,
            kind=upload.manifest.kind,
            stateless=upload.manifest.stateless,
            path=upload.archive,
            sha256=sha256_file(upload.archive),
            images=tuple(ShippedImage(ref, path) for ref, path in upload.images),
            snapshot=snapshot,
        )
        return with_host_client(lambda client: client.deploy(hp, shipment, 180.0))


def echo(endpoint: str, text: str) -> tuple[str, str]:
    """Echo ``text`` straight at a guest; (the text echoed, the reply's MessageID)."""
    body = (
        f'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:a="{WSA}">'
        f"<s:Header><a:Action>{ECHO}/Echo</a:Action><a:MessageID>urn:uuid:x</a:MessageID>"
        f'</s:Header><s:Body><e:Echo xmlns:e="{ECHO}"><e:text>{text}</e:text></e:Echo>'
        "</s:Body></s:Envelope>"
    ).encode()
    request = Request(endpoint, body, {"Content-Type": "text/xml"})
    with urlopen(request, timeout=30) as response:
        reply = etree.fromstring(response.read())
    return (
        reply.findtext(f".//{{{ECHO}}}text") or "",
        reply.findtext(f".//{{{WSA}}}MessageID") or "",
    )
