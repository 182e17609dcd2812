"""Shared by the WS-Security tests: signed messages made with real keys, and ways to change
them on the way as an attacker would (tests/soap/test_security*.py)."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from dynasoar import ns
from dynasoar.errors import WSSE
from dynasoar.keys import make_keypair
from dynasoar.soap import addressing
from dynasoar.soap.envelope import SoapVersion, build_envelope, parse_envelope, serialize
from dynasoar.soap.security import Credentials, ReplayCache, TrustStore, Verified, sign, verify
from dynasoar.soap.wsse import WSU

# An hour on, so that moving the clock back by the skew stays inside the certificates' validity.
NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(hours=1)
HP = ns.DYN_HP
MESSAGE_ID = "urn:uuid:6b7a3c1e-0000-4000-8000-000000000001"
IMAGE = b"\x00qcow2 image bytes\r\n--not-a-boundary\xff" * 100


@dataclass(frozen=True)
class Keys:
    key: Path
    cert: Path
    credentials: Credentials


def make_keys(directory: Path, name: str) -> Keys:
    key, cert = make_keypair(directory, name)
    return Keys(key, cert, Credentials.load(key, cert))


def payload(*, mtom: bool = False) -> etree._Element:
    deploy = etree.Element(f"{{{HP}}}Deploy", nsmap={"hp": HP})
    etree.SubElement(deploy, f"{{{HP}}}name").text = "Echo"
    if mtom:
        image = etree.SubElement(deploy, f"{{{HP}}}image")
        etree.SubElement(image, f"{{{ns.XOP}}}Include", href="cid:image@dynasoar")
        etree.SubElement(deploy, f"{{{HP}}}sha256").text = hashlib.sha256(IMAGE).hexdigest()
    return deploy


def envelope(
    version: SoapVersion,
    *,
    wsa: bool = True,
    mtom: bool = False,
    body: etree._Element | None = None,
) -> etree._Element:
    headers = addressing.AddressingHeaders(
        to="http://127.0.0.1:9/dynasoar/HostProvider",
        action="urn:dynasoar:2006:host/Deploy",
        message_id=MESSAGE_ID,
        reply_to=addressing.EndpointReference(ns.WSA_ANONYMOUS),
        present=True,
    )
    blocks = addressing.write_headers(headers) if wsa else []
    return build_envelope(version, [body if body is not None else payload(mtom=mtom)], blocks)


def signed(
    version: SoapVersion, keys: Keys, *, wsa: bool = True, mtom: bool = False, ttl: float = 300
) -> bytes:
    root = envelope(version, wsa=wsa, mtom=mtom)
    sign(root, keys.credentials, timestamp_ttl=ttl, now=NOW)
    return serialize(root)


def received(data: bytes) -> etree._Element:
    return parse_envelope(data).root


def check(
    root: etree._Element,
    trust: TrustStore,
    *,
    replay: ReplayCache | None = None,
    now: datetime.datetime = NOW,
) -> Verified:
    return verify(root, trust, replay=replay, now=now)


def tampered(data: bytes, change: Callable[[etree._Element], None]) -> etree._Element:
    """The message as a receiver parses it after someone changed it on the way."""
    root = received(data)
    change(root)
    return received(serialize(root))


def env_of(root: etree._Element) -> str:
    return str(etree.QName(root).namespace)


def part(root: etree._Element, path: str) -> etree._Element:
    """An element by a path of Clark names below the envelope; '{env}' means its namespace."""
    found = root.find(path.replace("{env}", "{%s}" % env_of(root)))
    assert found is not None, path
    return found


BODY = "{env}Body"
HEADER = "{env}Header"
SECURITY = f"{{env}}Header/{{{WSSE}}}Security"
TIMESTAMP = f"{SECURITY}/{{{WSU}}}Timestamp"
TO = f"{{env}}Header/{{{ns.WSA}}}To"


def remove(path: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        element = part(root, path)
        parent = element.getparent()
        assert parent is not None
        parent.remove(element)

    return change


def duplicate(path: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        element = part(root, path)
        parent = element.getparent()
        assert parent is not None
        parent.append(etree.fromstring(etree.tostring(element)))

    return change


def set_name(root: etree._Element) -> None:
    part(root, f"{BODY}/{{{HP}}}Deploy/{{{HP}}}name").text = "Evil"
