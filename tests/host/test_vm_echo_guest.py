"""The vm-echo guest's SOAP logic (deploy/services/vm-echo/guest/service/echo.awk) run on this
host with the same busybox the guest has: Echo and Compute in SOAP 1.1 and 1.2, with and without
WS-Addressing, and the faults; then Compute in a booted guest (it must burn the guest's CPU
time, which only the guest's kernel can show). The rest of the booted guest is tested in
test_libvirt_backend."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import zeep
from lxml import etree
from vm_support import FULL, URI, lay_out, output_log, require_vm_host

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
    return soap_envelope(
        soap, f'  <Echo xmlns="{ECHO}">\n    <text>{text}</text>\n  </Echo>', wsa, action
    )


def compute_request(
    soap: str, millis: str, *, wsa: str | None = WSA, action: str = "Compute"
) -> str:
    body = f'  <e:Compute xmlns:e="{ECHO}">\n    <e:millis>{millis}</e:millis>\n  </e:Compute>'
    return soap_envelope(soap, body, wsa, action)


def soap_envelope(soap: str, body: str, wsa: str | None, action: str) -> str:
    header = (
        f'<s:Header xmlns:a="{wsa}"><a:To>http://x/Echo</a:To>'
        f"<a:Action>{ECHO}/{action}</a:Action><a:MessageID>urn:uuid:req</a:MessageID></s:Header>"
        if wsa
        else ""
    )
    return (
        f'<?xml version="1.0"?>\n<s:Envelope xmlns:s="{soap}">{header}<s:Body>\n'
        f"{body}\n</s:Body></s:Envelope>"
    )


def fault_codes(fault: etree._Element, soap: str) -> str:
    """SOAP 1.1's faultcode, or SOAP 1.2's Code and Subcode values, space-separated."""
    return fault.findtext("faultcode") or " ".join(
        v.text or "" for v in fault.iter(f"{{{soap}}}Value")
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
        (request(SOAP11).replace("Echo", "Reverse"), SOAP11, "500", "Client"),
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
    assert code in fault_codes(fault, soap)


# --- Compute, as the code sample's (deploy/services/echo/echo_service.py) --------------------


@pytest.mark.parametrize(
    ("soap", "wsa", "content_type"),
    [
        (SOAP11, WSA, "text/xml; charset=utf-8"),
        (SOAP12, WSA, f'application/soap+xml; action="{ECHO}/Compute"'),
        (SOAP11, None, "text/xml"),
    ],
    ids=["soap11-wsa", "soap12-wsa", "soap11-plain"],
)
def test_compute_burns_cpu_and_returns_the_iterations(
    soap: str, wsa: str | None, content_type: str, tmp_path: Path
) -> None:
    began = time.monotonic()
    status, reply_type, body = answer(
        compute_request(soap, " 50 ", wsa=wsa), content_type, tmp=tmp_path
    )

    assert time.monotonic() - began >= 0.05
    assert status == "200 OK"
    assert reply_type.startswith("text/xml" if soap == SOAP11 else "application/soap+xml")
    reply = etree.fromstring(body)
    iterations = reply.findtext(f"{{{soap}}}Body/{{{ECHO}}}ComputeResponse/{{{ECHO}}}iterations")
    assert iterations is not None and int(iterations) > 0
    header = reply.find(f"{{{soap}}}Header")
    if wsa is None:
        assert header is None
    else:
        assert header is not None
        assert header.findtext(f"{{{wsa}}}RelatesTo") == "urn:uuid:req"
        assert header.findtext(f"{{{wsa}}}Action") == f"{ECHO}/ComputeResponse"


def test_compute_zero_returns_at_once(tmp_path: Path) -> None:
    status, _, body = answer(compute_request(SOAP11, "0"), tmp=tmp_path)

    assert status == "200 OK"
    assert etree.fromstring(body).findtext(f".//{{{ECHO}}}iterations") == "0"


# The code sample's codes: Client.InvalidArgument out of range, Client.ValidationError for what
# is not an xs:int (SOAP 1.2: Sender with that Subcode).
@pytest.mark.parametrize(
    ("body", "soap", "status", "code"),
    [
        (compute_request(SOAP11, "60001"), SOAP11, "500", "env:Client.InvalidArgument"),
        (compute_request(SOAP12, "-1"), SOAP12, "400", "env:Sender InvalidArgument"),
        (compute_request(SOAP11, "abc"), SOAP11, "500", "env:Client.ValidationError"),
        (compute_request(SOAP12, "1.5"), SOAP12, "400", "env:Sender ValidationError"),
        (compute_request(SOAP11, ""), SOAP11, "500", "env:Client.ValidationError"),
        (
            compute_request(SOAP11, "1").replace("<e:millis>1</e:millis>", ""),
            SOAP11, "500", "env:Client.ValidationError",
        ),
        (compute_request(SOAP11, "1", action="Echo"), SOAP11, "500", "wsa:ActionNotSupported"),
    ],
    ids=["too-much", "negative", "not-a-number", "fraction", "empty", "missing", "echo-action"],
)  # fmt: skip
def test_compute_faults(body: str, soap: str, status: str, code: str, tmp_path: Path) -> None:
    got_status, _, reply = answer(body, tmp=tmp_path)

    assert got_status.split()[0] == status
    fault = etree.fromstring(reply).find(f"{{{soap}}}Body/{{{soap}}}Fault")
    assert fault is not None
    assert fault_codes(fault, soap) == code


# --- Compute in a booted guest ----------------------------------------------------------------


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint of one booted vm-echo guest (the full image, TCG here)."""
    require_vm_host()
    # Here, not at the top: the awk tests above need only busybox, not libvirt's bindings.
    from dynasoar.host.backends.libvirt import LibvirtBackend, VmDeployment

    backend = LibvirtBackend(URI, scope=f"t{uuid.uuid4().hex[:8]}")
    try:
        deployment = lay_out(FULL, tmp_path_factory.mktemp("guest") / "deployment")
        started = backend.start(
            uuid.uuid4().hex,
            deployment.root,
            deployment.manifest,
            time.monotonic() + 90.0,
            output=output_log(deployment),
        )
        assert isinstance(started.handle, VmDeployment)
        yield started.handle.endpoint
        backend.stop(started.handle, grace=1.0)
    finally:
        backend.clear_leftovers()
        backend.close()


def post(endpoint: str, body: str, content_type: str) -> tuple[int, etree._Element, float]:
    """(HTTP status, reply envelope, wall seconds)."""
    request = urllib.request.Request(endpoint, body.encode(), {"Content-Type": content_type})
    began = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, data = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, data = error.code, error.read()
    return status, etree.fromstring(data), time.monotonic() - began


@pytest.mark.parametrize(
    ("soap", "content_type"),
    [(SOAP11, "text/xml"), (SOAP12, f'application/soap+xml; action="{ECHO}/Compute"')],
    ids=["soap11", "soap12"],
)
def test_compute_in_a_booted_guest_takes_its_cpu_time(
    guest: str, soap: str, content_type: str
) -> None:
    _, idle_reply, _ = post(guest, compute_request(soap, "0"), content_type)
    status, reply, took = post(guest, compute_request(soap, "300"), content_type)

    assert status == 200
    # 300 ms of the guest's CPU cannot take less than 300 ms (how much more depends on the
    # machine's load, so no upper bound and no comparison with the idle call's time)
    assert took >= 0.3
    path = f"{{{soap}}}Body/{{{ECHO}}}ComputeResponse/{{{ECHO}}}iterations"
    iterations = reply.findtext(path)
    assert iterations is not None and int(iterations) > int(idle_reply.findtext(path) or 0)
    header = reply.find(f"{{{soap}}}Header")
    assert header is not None
    assert header.findtext(f"{{{WSA}}}RelatesTo") == "urn:uuid:req"
    assert header.findtext(f"{{{WSA}}}Action") == f"{ECHO}/ComputeResponse"


@pytest.mark.parametrize(
    ("soap", "content_type", "millis", "status", "code"),
    [
        (SOAP11, "text/xml", "60001", 500, "env:Client.InvalidArgument"),
        (SOAP12, "application/soap+xml", "-5", 400, "env:Sender InvalidArgument"),
        (SOAP11, "text/xml", "ten", 500, "env:Client.ValidationError"),
    ],
    ids=["too-much-11", "negative-12", "not-a-number-11"],
)
def test_a_bad_millis_in_a_booted_guest_is_a_sender_fault(
    guest: str, soap: str, content_type: str, millis: str, status: int, code: str
) -> None:
    got_status, reply, took = post(guest, compute_request(soap, millis), content_type)

    assert got_status == status
    fault = reply.find(f"{{{soap}}}Body/{{{soap}}}Fault")
    assert fault is not None
    assert fault_codes(fault, soap) == code
    assert took < 30


def test_a_wsdl_generated_client_computes_in_the_guest(guest: str) -> None:
    client = zeep.Client(guest + "?wsdl")
    service = client.create_service(f"{{{ECHO}}}VmEchoSoap12Binding", guest)

    assert service.Compute(millis=20) > 0
    with pytest.raises(zeep.exceptions.Fault):
        service.Compute(millis=60_001)
