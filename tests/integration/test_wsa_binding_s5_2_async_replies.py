"""WS-Addressing 1.0 SOAP Binding §5.2 (non-anonymous response endpoints), on the wire, SOAP
1.1 and 1.2: a message whose ReplyTo (and FaultTo) is an http address is answered ``202
Accepted`` with no envelope; the SP deploys, relays and POSTs the reply (or fault) to that
address, in a connection of its own, with To, RelatesTo, Action and the endpoint's reference
parameters. The replies are received by a listener this test runs on 127.0.0.1. Covered: the
ReplyTo / FaultTo combinations of the W3C suite's table (address / anonymous / none), faults
of the service's and of the SP's, a one-way message, the operator's allow-list, retries with
backoff, a reply given up (logged and counted), an SP restart between the 202 and the
delivery (and in the middle of the relay: a stateless message goes again, a stateful one gets
dyn:Interrupted), and a cold VM deploy answered asynchronously."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dynasoar import ns
from dynasoar.bench.cluster import pid_of_deployment
from dynasoar.paths import samples_dir

from .conftest import Cluster, make_package, wait_for
from .listener import Listener, Received
from .wire import ECHO_ACTION, ECHO_NS, NSMAP, echo_body, envelope, post, wsa_headers
from .wsa import KEY, KEY_PARAM, fault_to, reply_to

MakeCluster = Callable[..., Cluster]
VERSIONS = pytest.mark.parametrize("version", ["1.1", "1.2"])
ALLOW = ["--reply-to-allow", "http://127.0.0.1:*/*"]
IS_REF = "{%s}IsReferenceParameter" % ns.WSA
COMPUTE = ECHO_NS + "/Compute"
COUNTER_NS = "urn:dynasoar:samples:counter"
INCREMENT = COUNTER_NS + "/Increment"


@pytest.fixture
def listener() -> Iterator[Listener]:
    with Listener() as it:
        yield it


@pytest.fixture
def async_cluster(make_cluster: MakeCluster) -> Cluster:
    cluster = make_cluster(sp_args=ALLOW, hps=[[]])
    cluster.client.publish(samples_dir() / "echo")
    return cluster


def send(
    cluster: Cluster,
    version: str,
    extra: str,
    body: str | None = None,
    action: str = ECHO_ACTION,
    service: str = "Echo",
) -> tuple[int, bytes, str | None]:
    url = cluster.service_url(service)
    headers, message_id = wsa_headers(to=url, action=action, extra=extra)
    reply = post(url, envelope(body or echo_body("async"), headers, version), version, action)
    return reply.status, reply.body, message_id


def wsa_text(message: Received, name: str) -> str | None:
    return message.text(f"{{*}}Header/wsa:{name}")


def rows(cluster: Cluster, where: str = "1") -> list[tuple[str, str, int, str | None]]:
    """(state, phase, attempts, last error) of the SP's reply store rows."""
    with sqlite3.connect(cluster.work / "sp" / "registry.sqlite") as db:
        return [
            (str(r[0]), str(r[1]), int(r[2]), r[3])
            for r in db.execute(
                f"SELECT state, phase, attempts, last_error FROM deliveries WHERE {where}"
            )
        ]


@VERSIONS
def test_the_reply_goes_to_the_reply_to_address(
    async_cluster: Cluster, listener: Listener, version: str
) -> None:
    extra = reply_to(listener.url(), KEY_PARAM)
    status, body, message_id = send(async_cluster, version, extra)
    assert (status, body) == (202, b""), "accepted at once, no envelope"
    (message,) = listener.wait_for(1)
    assert message.path == "/replies"
    assert message.text(".//echo:text") == "async"
    assert wsa_text(message, "To") == listener.url()
    assert wsa_text(message, "RelatesTo") == message_id
    assert wsa_text(message, "Action") == ECHO_NS + "/EchoResponse"
    assert wsa_text(message, "MessageID") not in (None, message_id)
    (key,) = [b for b in message.xml.find("{*}Header") if b.tag == KEY]
    assert key.get(IS_REF) == "true" and key.get("{urn:example:p}kind") == "gold"
    content_type = message.headers["content-type"]
    if version == "1.1":
        assert content_type.startswith("text/xml")
        assert message.headers["soapaction"] == f'"{ECHO_NS}/EchoResponse"'
    else:
        assert content_type.startswith("application/soap+xml")
        assert f'action="{ECHO_NS}/EchoResponse"' in content_type
    assert message.headers["x-dynasoar-host"] == async_cluster.hps[0].url
    wait_for(lambda: rows(async_cluster) == [("delivered", "reply", 1, None)], what="delivered")


@VERSIONS
def test_a_service_fault_goes_to_the_fault_to_address(
    async_cluster: Cluster, listener: Listener, version: str
) -> None:
    body = f'<e:Compute xmlns:e="{ECHO_NS}"><e:millis>-1</e:millis></e:Compute>'
    extra = reply_to(listener.url("/replies")) + fault_to(listener.url("/faults"), KEY_PARAM)
    status, _, message_id = send(async_cluster, version, extra, body, COMPUTE)
    assert status == 202
    (message,) = listener.wait_for(1)
    assert message.path == "/faults"
    assert b"InvalidArgument" in message.body
    assert wsa_text(message, "To") == listener.url("/faults")
    assert wsa_text(message, "RelatesTo") == message_id
    assert wsa_text(message, "Action") == ns.WSA_SOAP_FAULT_ACTION
    assert [b.get(IS_REF) for b in message.xml.find("{*}Header") if b.tag == KEY] == ["true"]


@VERSIONS
def test_a_fault_of_the_sps_own_goes_to_the_fault_to_address(
    async_cluster: Cluster, listener: Listener, version: str
) -> None:
    extra = reply_to(listener.url()) + fault_to(listener.url("/faults"))
    status, _, message_id = send(async_cluster, version, extra, action=ECHO_NS + "/Nope")
    assert status == 202
    (message,) = listener.wait_for(1)
    assert message.path == "/faults"
    assert wsa_text(message, "Action") == ns.WSA_FAULT_ACTION
    assert wsa_text(message, "RelatesTo") == message_id
    code = message.xml.find(".//s12:Subcode/s12:Value", NSMAP)
    faultcode = code if code is not None else message.xml.find(".//faultcode")
    assert faultcode is not None and (faultcode.text or "").endswith("ActionNotSupported")


@VERSIONS
def test_anonymous_reply_to_with_a_fault_to_address(
    async_cluster: Cluster, listener: Listener, version: str
) -> None:
    """The reply comes back on the HTTP response; the fault goes to its address."""
    extra = fault_to(listener.url("/faults"))
    status, body, _ = send(async_cluster, version, extra)
    assert status == 200 and b"async" in body
    bad = f'<e:Compute xmlns:e="{ECHO_NS}"><e:millis>-1</e:millis></e:Compute>'
    status, body, message_id = send(async_cluster, version, extra, bad, COMPUTE)
    assert (status, body) == (202, b"")
    (message,) = listener.wait_for(1)
    assert message.path == "/faults" and wsa_text(message, "RelatesTo") == message_id


@VERSIONS
def test_a_reply_to_address_with_an_anonymous_fault_to(
    async_cluster: Cluster, listener: Listener, version: str
) -> None:
    """The fault comes back on the HTTP response; the reply goes to its address."""
    extra = reply_to(listener.url()) + fault_to(ns.WSA_ANONYMOUS)
    bad = f'<e:Compute xmlns:e="{ECHO_NS}"><e:millis>-1</e:millis></e:Compute>'
    status, body, _ = send(async_cluster, version, extra, bad, COMPUTE)
    assert status in (400, 500) and b"InvalidArgument" in body
    status, body, message_id = send(async_cluster, version, extra)
    assert (status, body) == (202, b"")
    (message,) = listener.wait_for(1)
    assert wsa_text(message, "RelatesTo") == message_id


NOTIFY_WSDL = """<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions name="Notes" targetNamespace="urn:test:notes" xmlns:tns="urn:test:notes"
    xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:soap12="http://schemas.xmlsoap.org/wsdl/soap12/"
    xmlns:wsaw="http://www.w3.org/2006/05/addressing/wsdl"
    xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <wsdl:types><xs:schema targetNamespace="urn:test:notes" elementFormDefault="qualified">
    <xs:element name="Note" type="xs:string"/>
    <xs:element name="Count"><xs:complexType><xs:sequence/></xs:complexType></xs:element>
    <xs:element name="CountResponse" type="xs:int"/>
  </xs:schema></wsdl:types>
  <wsdl:message name="Note"><wsdl:part name="p" element="tns:Note"/></wsdl:message>
  <wsdl:message name="Count"><wsdl:part name="p" element="tns:Count"/></wsdl:message>
  <wsdl:message name="CountResponse">
    <wsdl:part name="p" element="tns:CountResponse"/></wsdl:message>
  <wsdl:portType name="Notes">
    <wsdl:operation name="Note">
      <wsdl:input message="tns:Note" wsaw:Action="urn:test:notes/Note"/></wsdl:operation>
    <wsdl:operation name="Count">
      <wsdl:input message="tns:Count" wsaw:Action="urn:test:notes/Count"/>
      <wsdl:output message="tns:CountResponse" wsaw:Action="urn:test:notes/CountResponse"/>
    </wsdl:operation>
  </wsdl:portType>
  {bindings}
  <wsdl:service name="Notes">
    <wsdl:port name="N11" binding="tns:N11"><soap:address location="http://localhost/x"/></wsdl:port>
    <wsdl:port name="N12" binding="tns:N12"><soap12:address location="http://localhost/x"/></wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"""
BINDING = """<wsdl:binding name="{name}" type="tns:Notes"><{p}:binding style="document"
    transport="http://schemas.xmlsoap.org/soap/http"/>
  <wsdl:operation name="Note"><{p}:operation soapAction="urn:test:notes/Note"/>
    <wsdl:input><{p}:body use="literal"/></wsdl:input></wsdl:operation>
  <wsdl:operation name="Count"><{p}:operation soapAction="urn:test:notes/Count"/>
    <wsdl:input><{p}:body use="literal"/></wsdl:input>
    <wsdl:output><{p}:body use="literal"/></wsdl:output></wsdl:operation>
</wsdl:binding>"""
NOTES_APP = '''
"""A one-way Note (counted, answered 202 with no envelope) and a Count of the notes."""
NOTES = [0]


def application(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    soap12 = b"http://www.w3.org/2003/05/soap-envelope" in body
    if b"Note>" in body:
        NOTES[0] += 1
        start_response("202 Accepted", [("Content-Length", "0")])
        return [b""]
    env = "http://www.w3.org/2003/05/soap-envelope" if soap12 else "http://schemas.xmlsoap.org/soap/envelope/"
    reply = (
        f'<s:Envelope xmlns:s="{env}"><s:Body><n:CountResponse xmlns:n="urn:test:notes">'
        f"{NOTES[0]}</n:CountResponse></s:Body></s:Envelope>"
    ).encode()
    kind = "application/soap+xml" if soap12 else "text/xml"
    start_response("200 OK", [("Content-Type", kind + "; charset=utf-8"),
                              ("Content-Length", str(len(reply)))])
    return [reply]
'''


def notes_package(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    bindings = BINDING.format(name="N11", p="soap") + BINDING.format(name="N12", p="soap12")
    (directory / "Notes.wsdl").write_text(NOTIFY_WSDL.replace("{bindings}", bindings))
    (directory / "notes_service.py").write_text(NOTES_APP)
    (directory / "dynasoar.toml").write_text(
        '[service]\nname = "Notes"\nversion = "1.0"\nkind = "code"\nstateless = false\n'
        'wsdl = "Notes.wsdl"\n\n[code]\napp = "notes_service:application"\n'
    )
    return directory


@VERSIONS
def test_a_one_way_message_is_accepted_and_nothing_is_sent(
    make_cluster: MakeCluster, listener: Listener, version: str, tmp_path: Path
) -> None:
    """One-way (no reply expected), its faults to an address: 202 at once, processed, and
    no message to the listener (there is no reply, and no fault)."""
    cluster = make_cluster(sp_args=ALLOW, hps=[[]])
    cluster.client.publish(notes_package(tmp_path / "notes"))
    note = '<n:Note xmlns:n="urn:test:notes">hello</n:Note>'
    status, body, _ = send(
        cluster, version, fault_to(listener.url("/faults")), note, "urn:test:notes/Note", "Notes"
    )
    assert (status, body) == (202, b"")
    wait_for(lambda: rows(cluster) == [], what="the accepted note to be processed")
    count = '<n:Count xmlns:n="urn:test:notes"/>'
    status, body, _ = send(cluster, version, "", count, "urn:test:notes/Count", "Notes")
    assert status == 200 and b">1</" in body
    assert listener.received == []


@VERSIONS
def test_a_reply_to_address_must_be_allowed(
    make_cluster: MakeCluster, listener: Listener, version: str
) -> None:
    cluster = make_cluster(sp_args=["--reply-to-allow", "https://replies.example.org/*"], hps=[])
    cluster.client.publish(samples_dir() / "echo")
    for address in (listener.url(), "https://user:secret@replies.example.org/r"):
        status, body, _ = send(cluster, version, reply_to(address))
        assert status == (400 if version == "1.2" else 500)
        # SOAP 1.1 has no subsubcode: its faultcode is wsa:InvalidAddressingHeader.
        assert (b"ReplyToNotAllowed" in body) == (version == "1.2")
        assert b"InvalidAddressingHeader" in body and b"replies.example.org" in body
    assert listener.received == []


@VERSIONS
def test_a_failed_delivery_is_retried_and_delivered_once(
    async_cluster: Cluster, version: str
) -> None:
    with Listener(statuses=[503, 503]) as listener:
        status, _, message_id = send(async_cluster, version, reply_to(listener.url()))
        assert status == 202
        first = listener.wait_for(3)
        assert [m.status for m in first] == [503, 503, 202]
        assert len({wsa_text(m, "MessageID") for m in first}) == 1, "the same reply each time"
        assert {wsa_text(m, "RelatesTo") for m in first} == {message_id}
        wait_for(lambda: rows(async_cluster)[0][:3] == ("delivered", "reply", 3))
        # A later reply is delivered; the first was not sent again after its success.
        send(async_cluster, version, reply_to(listener.url()))
        listener.wait_for(4)
        assert [wsa_text(m, "RelatesTo") for m in listener.received].count(message_id) == 3


@VERSIONS
def test_an_undeliverable_reply_is_given_up_logged_and_counted(
    make_cluster: MakeCluster, version: str
) -> None:
    cluster = make_cluster(sp_args=[*ALLOW, "--reply-retry-for", "3"], hps=[[]])
    cluster.client.publish(samples_dir() / "echo")
    with Listener(default=503) as busy, Listener(default=400) as refusing:
        assert send(cluster, version, reply_to(busy.url()))[0] == 202
        assert send(cluster, version, reply_to(refusing.url()))[0] == 202
        wait_for(
            lambda: [r[0] for r in rows(cluster)] == ["undeliverable"] * 2,
            what="both replies to be given up",
        )
        assert len(refusing.received) == 1, "a 400 is not tried again"
        assert len(busy.received) >= 2, "a 503 is"
    log = cluster.sp.log()
    assert "refused with HTTP 400" in log
    assert "undeliverable" in log and "(2 undeliverable so far)" in log


@VERSIONS
def test_a_restart_between_the_202_and_the_delivery_loses_nothing(
    async_cluster: Cluster, version: str
) -> None:
    listener = Listener()
    listener.stop()  # the consumer is away: deliveries fail, and are kept
    try:
        status, _, message_id = send(async_cluster, version, reply_to(listener.url()))
        assert status == 202
        wait_for(lambda: rows(async_cluster)[0][2] >= 1, what="a first failed attempt")
        async_cluster.sp.stop()
        listener.start()
        async_cluster.start_sp()
        (message,) = listener.wait_for(1)
        assert wsa_text(message, "RelatesTo") == message_id
        assert message.text(".//echo:text") == "async"
        wait_for(lambda: rows(async_cluster)[0][0] == "delivered")
    finally:
        listener.stop()


def stopped_service(cluster: Cluster, service: str) -> int:
    (deployment,) = [d for d in cluster.client.call("ListDeployments") if d.service == service]
    pid = pid_of_deployment(deployment.id)
    os.kill(pid, signal.SIGSTOP)
    return pid


@VERSIONS
def test_a_restart_in_the_middle_of_the_relay(
    async_cluster: Cluster, listener: Listener, version: str, tmp_path: Path
) -> None:
    """The SP stops while accepted messages are at their services: after the restart the
    stateless one is sent again and answered; the stateful one, which may have run, is
    answered dyn:Interrupted."""
    cluster = async_cluster
    cluster.client.publish(make_package(tmp_path, "counter"))
    counter = f'<c:Increment xmlns:c="{COUNTER_NS}"/>'
    for service in ("Echo", "Counter"):
        cluster.client.call("Deploy", name=service)
    pids = [stopped_service(cluster, "Echo"), stopped_service(cluster, "Counter")]
    try:
        _, _, echo_id = send(cluster, version, reply_to(listener.url("/echo")))
        _, _, count_id = send(
            cluster,
            version,
            reply_to(listener.url("/counter")),
            counter,
            INCREMENT,
            "Counter",
        )
        wait_for(lambda: sorted(r[1] for r in rows(cluster)) == ["relay", "relay"])
        cluster.sp.stop()
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    cluster.start_sp()
    received = {m.path: m for m in listener.wait_for(2)}
    assert received["/echo"].text(".//echo:text") == "async"
    assert wsa_text(received["/echo"], "RelatesTo") == echo_id
    interrupted = received["/counter"]
    assert wsa_text(interrupted, "RelatesTo") == count_id
    assert b"Interrupted" in interrupted.body and wsa_text(interrupted, "Action") == (
        ns.WSA_SOAP_FAULT_ACTION
    )


# -- a cold VM deploy, answered asynchronously ------------------------------------------------

BUILD = Path(__file__).resolve().parents[2] / "deploy" / "services" / "vm-echo" / "build"
VM = BUILD / "vm-echo"
VM_NS = "urn:dynasoar:samples:echo"


@pytest.fixture(scope="module")
def vm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not (VM / "dynasoar.toml").is_file():
        pytest.skip("the vm-echo image is not built: run `make vm-image`")
    if shutil.which("libvirtd") is None or shutil.which("qemu-system-x86_64") is None:
        pytest.skip("libvirt + QEMU are not installed: run scripts/install-vm.sh as root")
    start = Path(__file__).resolve().parents[2] / "scripts" / "start-libvirt.sh"
    subprocess.run(["bash", str(start)], check=True, timeout=60)
    cluster = Cluster(tmp_path_factory.mktemp("vm-async"), None, sp_args=ALLOW)  # type: ignore[arg-type]
    cluster.start_sp()
    try:
        cluster.add_hp(args=["--backend", "libvirt"])
        cluster.client.publish(VM)
        yield cluster
    finally:
        cluster.stop()


@VERSIONS
def test_a_cold_vm_deploy_answered_asynchronously(vm_cluster: Cluster, version: str) -> None:
    """No HTTP connection held through the boot: 202 at once, the reply when the guest has
    booted. The guest writes its own RelatesTo and Action and no reference parameters: the
    SP adds those, once."""
    if vm_cluster.client.call("ListDeployments"):
        vm_cluster.client.call("Undeploy", name="VmEcho")  # cold again for the second version
    with Listener() as listener:
        url = vm_cluster.service_url("VmEcho")
        headers, message_id = wsa_headers(
            to=url, action=ECHO_ACTION, extra=reply_to(listener.url(), KEY_PARAM)
        )
        reply = post(url, envelope(echo_body("from a booting VM"), headers, version), version)
        assert (reply.status, reply.body) == (202, b"")
        (message,) = listener.wait_for(1, timeout=300)
    assert message.headers["x-dynasoar-cold"] == "1"
    assert message.text(".//echo:text") == "from a booting VM"
    assert wsa_text(message, "RelatesTo") == message_id
    assert wsa_text(message, "To") == listener.url()
    keys = [b for b in message.xml.find("{*}Header") if b.tag == KEY]
    assert [k.get(IS_REF) for k in keys] == ["true"]


@VERSIONS
def test_a_vm_reply_on_the_http_response_gets_the_reference_parameters(
    vm_cluster: Cluster, version: str
) -> None:
    url = vm_cluster.service_url("VmEcho")
    headers, message_id = wsa_headers(
        to=url, action=ECHO_ACTION, extra=reply_to(ns.WSA_ANONYMOUS, KEY_PARAM)
    )
    reply = post(url, envelope(echo_body("warm"), headers, version), version, timeout=300)
    assert reply.status == 200, reply.body
    assert reply.text(".//wsa:RelatesTo") == message_id
    header = reply.xml.find("{*}Header")
    assert header is not None
    assert [k.get(IS_REF) for k in header if k.tag == KEY] == ["true"]


ONE_WAY_CASES = {
    "action only": "",
    "with a MessageID": "<wsa:MessageID>urn:uuid:1111-one-way</wsa:MessageID>",
    "reply-to none": reply_to(ns.WSA_NONE),
    "fault-to none": fault_to(ns.WSA_NONE),
    "reply-to with reference parameters": reply_to(ns.WSA_ANONYMOUS, KEY_PARAM),
}


@VERSIONS
def test_one_way_messages_as_the_w3c_suite_sends_them(
    make_cluster: MakeCluster, version: str, tmp_path: Path
) -> None:
    """The suite's one-way scenarios (a Note with an Action and everything else defaulted, a
    MessageID, a ReplyTo or FaultTo of none, reference parameters): each answered 202 with no
    envelope, each processed."""
    cluster = make_cluster(hps=[[]])
    cluster.client.publish(notes_package(tmp_path / "notes"))
    url = cluster.service_url("Notes")
    note = '<n:Note xmlns:n="urn:test:notes">hello</n:Note>'
    for noted, (case, extra) in enumerate(ONE_WAY_CASES.items(), start=1):
        headers = f"<wsa:To>{url}</wsa:To><wsa:Action>urn:test:notes/Note</wsa:Action>{extra}"
        reply = post(url, envelope(note, headers, version), version, "urn:test:notes/Note")
        assert (reply.status, reply.body) == (202, b""), case
        wait_for(lambda: rows(cluster) == [], what=f"{case}: the note to be processed")
        count = '<n:Count xmlns:n="urn:test:notes"/>'
        status, body, _ = send(cluster, version, "", count, "urn:test:notes/Count", "Notes")
        assert status == 200 and f">{noted}</".encode() in body, (case, body)


@VERSIONS
def test_a_message_too_big_to_keep_is_answered_with_a_fault_at_its_address(
    async_cluster: Cluster, listener: Listener, version: str
) -> None:
    """A message accepted for an asynchronous reply is kept whole, up to 16 MiB: a bigger one
    is refused with dyn:PayloadTooLarge, sent where its faults go."""
    text = "x" * (17 << 20)
    status, body, message_id = send(
        async_cluster, version, reply_to(listener.url()), echo_body(text)
    )
    assert (status, body) == (202, b"")
    (fault,) = listener.wait_for(1)
    assert b"PayloadTooLarge" in fault.body
    assert wsa_text(fault, "RelatesTo") == message_id
    assert not async_cluster.client.call("ListDeployments"), "nothing deployed for it"
