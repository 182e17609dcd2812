"""suds-community: a client built from the WSDL the SP serves. suds speaks SOAP 1.1 only (it
binds the SOAP 1.1 port), has no WS-Addressing support of its own (the headers go in through its
``soapheaders`` option, rebuilt for every call) and cannot send MTOM."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from dynasoar import ns

from .conftest import Interop
from .results import Results
from .scenario import ECHO_NS, SP_NS, Peer, check

suds_client = pytest.importorskip("suds.client", reason="suds-community: the `test` extra")
import suds  # noqa: E402
from suds.sax.element import Element  # noqa: E402
from suds.transport.http import HttpTransport  # noqa: E402

pytestmark = pytest.mark.integration

STACK = "suds-community"


class RecordingTransport(HttpTransport):  # type: ignore[misc]
    """suds's urllib transport, keeping the HTTP headers of the last exchange."""

    sent: dict[str, str]
    got: dict[str, str]

    def send(self, request: Any) -> Any:
        self.sent = {
            k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()
        }
        self.got = {}
        try:
            reply = HttpTransport.send(self, request)
        except suds.transport.TransportError as exc:
            self.got = {k.lower(): v for k, v in (exc.fp.headers.items() if exc.fp else [])}
            raise
        self.got = {k.lower(): v for k, v in reply.headers.items()}
        return reply


class SudsPeer:
    def __init__(self, wsdl: str, tns: str) -> None:
        self.transport = RecordingTransport()
        self.client = suds_client.Client(wsdl, transport=self.transport, cache=None)
        self.tns = tns
        self.address = self.client.wsdl.services[0].ports[0].location

    def call(
        self, operation: str, address: str | None = None, wsa: bool = True, **kwargs: Any
    ) -> dict[str, Any]:
        address = address or self.address
        step: dict[str, Any] = {}
        headers = []
        if wsa:
            step["message_id"] = f"urn:uuid:{uuid.uuid4()}"
            headers = [
                Element("Action", ns=("wsa", ns.WSA)).setText(f"{self.tns}/{operation}"),
                Element("MessageID", ns=("wsa", ns.WSA)).setText(step["message_id"]),
                Element("To", ns=("wsa", ns.WSA)).setText(address),
            ]
        self.client.set_options(soapheaders=headers, location=address)
        try:
            step["result"] = getattr(self.client.service, operation)(**kwargs)
            step["ok"] = True
        except suds.WebFault as exc:
            fault = exc.fault
            step.update(ok=False, fault=True, code=str(fault.faultcode))
            step["reason"] = str(fault.faultstring)
            detail = getattr(fault, "detail", None)
            step["detail"] = str(detail) if detail is not None else None
        received = self.client.last_received()
        header = received.getChild("Envelope").getChild("Header") if received else None
        if header is not None:
            relates = header.getChild("RelatesTo", ns=("wsa", ns.WSA))
            action = header.getChild("Action", ns=("wsa", ns.WSA))
            step["relates_to"] = relates.getText() if relates is not None else None
            step["reply_action"] = action.getText() if action is not None else None
        sent = self.client.last_sent()
        envelope = sent.getChild("Envelope") if sent else None
        step["version"] = (
            "1.2" if envelope is not None and envelope.namespace()[1] == (ns.SOAP12_ENV) else "1.1"
        )
        step["sent_content_type"] = self.transport.sent.get("content-type", "")
        step["sent_soapaction"] = self.transport.sent.get("soapaction", "")
        step["cold"] = self.transport.got.get("x-dynasoar-cold")
        step["deployment"] = self.transport.got.get("x-dynasoar-deployment")
        return step


def test_suds(interop: Interop, results: Results) -> None:
    results.version(STACK, suds.__version__)
    results.unsupported(STACK, "SOAP 1.2", "suds-community speaks SOAP 1.1 only")
    results.unsupported(STACK, "MTOM", "suds-community cannot send MTOM")
    name = "EchoSuds11"
    url = interop.publish_echo(name)
    echo = SudsPeer(url + "?wsdl", ECHO_NS)
    provider = SudsPeer(interop.sp + "/dynasoar/ServiceProvider?wsdl", SP_NS)
    assert echo.client.wsdl.services[0].ports[0].name == "EchoSoap11"
    assert echo.address == url

    steps = {
        "cold": echo.call("Echo", text="cold from suds"),
        "warm": echo.call("Echo", text="warm from suds"),
        "plain": echo.call("Echo", wsa=False, text="plain suds"),
        "service_fault": echo.call("Compute", millis=-1),
        "provider_fault": echo.call(
            "Echo", address=f"{interop.sp}/services/{interop.broken}", text="to a broken package"
        ),
        "list_services": provider.call("ListServices"),
    }
    for step in steps.values():
        if isinstance(step.get("result"), str):
            step["text"] = step.pop("result")
    listed = steps["list_services"].pop("result", None)
    steps["list_services"]["services"] = ",".join(s.name for s in listed or [])
    how = {"WS-A": "suds has no WS-Addressing of its own: headers set per call (soapheaders)"}
    check(results, Peer(STACK, "1.1", name, steps, how=how))
