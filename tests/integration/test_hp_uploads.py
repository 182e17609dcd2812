"""Uploads a Host Provider refuses: truncated or corrupted MTOM, a digest mismatch, an oversize
part, a reference to a missing part. Each gets a SOAP fault and leaves nothing on the HP."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynasoar import ns
from dynasoar.consumer.host_client import image_element
from dynasoar.images import ImageRef
from dynasoar.package import pack
from dynasoar.paths import samples_dir
from dynasoar.procs import Actor, start_actor
from dynasoar.soap import addressing
from dynasoar.soap.envelope import SoapVersion, build_envelope, serialize
from dynasoar.soap.mtom_writer import MtomWriter, OutgoingAttachment
from dynasoar.soap.xop import xop_include

from .wire import Reply, post

HP = "{%s}" % ns.DYN_HP
DYN = "{%s}" % ns.DYN
LIMIT = 2 << 20


@pytest.fixture
def hp(tmp_path: Path) -> Iterator[Actor]:
    actor = start_actor(
        "hp",
        ["--port", "0", "--data", str(tmp_path / "hp"), "--max-upload", str(LIMIT)],
        tmp_path / "hp.log",
    )
    try:
        yield actor
    finally:
        actor.stop()


def _deploy(
    url: str,
    package: Path,
    declared: str,
    image: tuple[ImageRef, bytes] | None = None,
    include: str = "package@t",
) -> tuple[str, bytes]:
    """A Deploy as the SP sends it: (Content-Type, body bytes)."""
    from lxml import etree

    request = etree.Element(HP + "Deploy", nsmap={"hp": ns.DYN_HP})
    for name, value in (
        ("service", "Echo"),
        ("version", "1.0"),
        ("kind", "code"),
        ("stateless", "true"),
    ):
        etree.SubElement(request, HP + name).text = value
    etree.SubElement(request, HP + "package").append(xop_include(include))
    etree.SubElement(request, HP + "sha256").text = declared
    attachments = [OutgoingAttachment("package@t", "application/octet-stream", package)]
    if image is not None:
        element = image_element(HP + "image", image[0])
        etree.SubElement(element, DYN + "content").append(xop_include("image@t"))
        request.append(element)
        attachments.append(OutgoingAttachment("image@t", "application/octet-stream", image[1]))
    wsa = addressing.AddressingHeaders(
        to=url, action=f"{ns.DYN_HP}/Deploy", message_id=addressing.new_message_id(), present=True
    )
    envelope = serialize(
        build_envelope(SoapVersion.SOAP12, [request], addressing.write_headers(wsa))
    )
    writer = MtomWriter(envelope, attachments, "1.2", action=f"{ns.DYN_HP}/Deploy")
    return writer.content_type, b"".join(writer.iter_chunks())


def _left_behind(tmp_path: Path) -> list[str]:
    data = tmp_path / "hp"
    return sorted(
        str(p.relative_to(data))
        for d in ("spool", "images", "deployments")
        for p in (data / d).rglob("*")
    )


def _send(hp: Actor, content_type: str, body: bytes) -> Reply:
    return post(hp.url + "/dynasoar/HostProvider", body, "1.2", content_type=content_type)


def _codes(reply: Reply) -> list[str]:
    return reply.fault_codes()


@pytest.fixture
def package(tmp_path: Path) -> Path:
    return pack(samples_dir() / "echo", tmp_path / "echo.tar.gz")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_good_deploy_works(hp: Actor, package: Path, tmp_path: Path) -> None:
    content_type, body = _deploy(hp.url + "/dynasoar/HostProvider", package, _sha(package))
    reply = _send(hp, content_type, body)
    assert reply.status == 200, reply.body[:500]
    assert reply.text(".//wsa:Address")


@pytest.mark.parametrize("cut", [0.3, 0.9, 0.999])
def test_truncated_upload(hp: Actor, package: Path, tmp_path: Path, cut: float) -> None:
    content_type, body = _deploy(hp.url + "/dynasoar/HostProvider", package, _sha(package))
    reply = _send(hp, content_type, body[: int(len(body) * cut)])
    assert DYN + "MalformedMessage" in _codes(reply)
    assert _left_behind(tmp_path) == []


def test_corrupted_package_fails_its_digest(hp: Actor, package: Path, tmp_path: Path) -> None:
    content_type, body = _deploy(hp.url + "/dynasoar/HostProvider", package, _sha(package))
    data = package.read_bytes()
    middle = body.index(data[100:200]) + 50  # a byte inside the package part
    corrupted = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
    reply = _send(hp, content_type, corrupted)
    assert DYN + "MalformedMessage" in _codes(reply)
    assert "SHA-256" in (reply.text(".//s12:Text") or "")
    assert _left_behind(tmp_path) == []


def test_image_digest_mismatch(hp: Actor, package: Path, tmp_path: Path) -> None:
    ref = ImageRef("disk.qcow2", "0" * 64, 4096)
    content_type, body = _deploy(
        hp.url + "/dynasoar/HostProvider", package, _sha(package), (ref, b"\0" * 4096)
    )
    reply = _send(hp, content_type, body)
    assert DYN + "MalformedMessage" in _codes(reply)
    assert _left_behind(tmp_path) == []


def test_oversize_part(hp: Actor, package: Path, tmp_path: Path) -> None:
    big = b"\1" * (LIMIT + 1)
    ref = ImageRef("disk.qcow2", hashlib.sha256(big).hexdigest(), len(big))
    content_type, body = _deploy(
        hp.url + "/dynasoar/HostProvider", package, _sha(package), (ref, big)
    )
    reply = _send(hp, content_type, body)
    assert DYN + "PayloadTooLarge" in _codes(reply)
    assert _left_behind(tmp_path) == []


def test_reference_to_a_missing_part(hp: Actor, package: Path, tmp_path: Path) -> None:
    content_type, body = _deploy(
        hp.url + "/dynasoar/HostProvider", package, _sha(package), include="nowhere@t"
    )
    reply = _send(hp, content_type, body)
    assert DYN + "MalformedMessage" in _codes(reply)
    assert _left_behind(tmp_path) == []


def test_missing_close_delimiter(hp: Actor, package: Path, tmp_path: Path) -> None:
    content_type, body = _deploy(hp.url + "/dynasoar/HostProvider", package, _sha(package))
    reply = _send(hp, content_type, body[: body.rindex(b"--")])
    assert DYN + "MalformedMessage" in _codes(reply)
    assert _left_behind(tmp_path) == []
