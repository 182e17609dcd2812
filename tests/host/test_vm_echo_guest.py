"""The vm-echo guest's SOAP logic (deploy/services/vm-echo/guest/service/echo.awk) run on this
host with the same busybox the guest has: Echo in SOAP 1.1 and 1.2, with and without
WS-Addressing, and the faults. The booted guest is tested in test_libvirt_backend."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

ROOT = Path(__file__).resolve().parents[2]
ECHO_AWK = ROOT / "deploy" / "services" / "vm-echo" / "guest" / "service" / "echo.awk"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSA2004 = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
ECHO = "urn:dynasoar:samples:echo"
REPLY_ID = "urn:uuid:reply"


def answer(body: str, content_type: str = "text/xml", *, tmp: Path) -> tuple[str, str, bytes]:
    """(HTTP status line, Content-Type, envelope) as the CGI would send them."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed: run scripts/install-vm.sh as root")
    out = tmp / "reply.xml"
    meta = subprocess.run(
        [busybox, "awk", "-v", f"out={out}", "-v", f"content_type={content_type}",
         "-v", f"message_id={REPLY_ID}", "-f", str(ECHO_AWK)],
        input=body.encode(), capture_output=True, check=True, timeout=10,
    ).stdout.decode()  # fmt: skip
    status, _, reply_type = meta.partition("\t")
    return status, reply_type, out.read_bytes()


def request(soap: str, text: str = "hi", *, wsa: str | None = WSA, action: str = "Echo") -> str:
    header = (
        f'<s:Header xmlns:a="{wsa}"><a:To>http://x/Echo</a:To>'
        f"<a:Action>{ECHO}/{action}</a:Action><a:MessageID>urn:uuid:req</a:MessageID></s:Header>"
        if wsa
        else ""
    )
    return (
        f'<?xml version="1.0"?>\n<s:Envelope xmlns:s="{soap}">{header}<s:Body>\n'
        f'  <Echo xmlns="{ECHO}">\n    <text>{text}</text>\n  </Echo>\n</s:Body></s:Envelope>'
    )


@pytest.mark.parametrize(
    ("soap", "wsa", "content_type"),
    [
        (SOAP11, WSA, "text/xml; charset=utf-8"),
        (SOAP12, WSA, f'application/soap+xml; action="{ECHO}/Echo"'),
        (SOAP11, WSA2004, "text/xml"),
        (SOAP11, None, "text/xml"),
    ],
    ids=["soap11-wsa", "soap12-wsa", "soap11-wsa2004", "soap11-plain"],
)
def test_echo(soap: str, wsa: str | None, content_type: str, tmp_path: Path) -> None:
    text = "a &amp; b &lt;c&gt; é\nsecond line"
    status, reply_type, body = answer(request(soap, text, wsa=wsa), content_type, tmp=tmp_path)

    assert status == "200 OK"
    assert reply_type.startswith("text/xml" if soap == SOAP11 else "application/soap+xml")
    envelope = etree.fromstring(body)
    assert envelope.tag == f"{{{soap}}}Envelope"
    assert envelope.findtext(f"{{{soap}}}Body/{{{ECHO}}}EchoResponse/{{{ECHO}}}text") == (
        "a & b <c> é\nsecond line"
    )
    header = envelope.find(f"{{{soap}}}Header")
    if wsa is None:
        assert header is None  # a plain request gets a plain answer
    else:
        assert header is not None
        assert header.findtext(f"{{{wsa}}}RelatesTo") == "urn:uuid:req"
        assert header.findtext(f"{{{wsa}}}Action") == f"{ECHO}/EchoResponse"
        assert header.findtext(f"{{{wsa}}}MessageID") == REPLY_ID


def test_empty_text_is_echoed_empty(tmp_path: Path) -> None:
    body = request(SOAP11).replace("<text>hi</text>", "<text/>")
    status, _, reply = answer(body, tmp=tmp_path)

    assert status == "200 OK"
    assert etree.fromstring(reply).findtext(f".//{{{ECHO}}}text") == ""


@pytest.mark.parametrize(
    ("body", "soap", "status", "code"),
    [
        (request(SOAP11, action="Other"), SOAP11, "500", "ActionNotSupported"),
        (request(SOAP12, action="Other"), SOAP12, "400", "ActionNotSupported"),
        (request(SOAP11).replace("Echo", "Compute"), SOAP11, "500", "Client"),
        (request(SOAP12).replace("<text>hi</text>", ""), SOAP12, "400", "Sender"),
        ("<not-soap/>", SOAP11, "500", "Client"),
    ],
    ids=["action-11", "action-12", "other-operation", "no-text", "not-soap"],
)
def test_faults(body: str, soap: str, status: str, code: str, tmp_path: Path) -> None:
    got_status, _, reply = answer(body, tmp=tmp_path)

    assert got_status.split()[0] == status
    fault = etree.fromstring(reply).find(f"{{{soap}}}Body/{{{soap}}}Fault")
    assert fault is not None
    codes = fault.findtext("faultcode") or " ".join(
        v.text or "" for v in fault.iter(f"{{{soap}}}Value")
    )
    assert code in codes
