"""zeep: clients built from the WSDLs the SP serves, bound to the SOAP 1.1 or the SOAP 1.2 port.
zeep sends WS-Addressing by itself when the WSDL declares wsaw:Action (its ``WsAddressingPlugin``
applied by the binding), so it has no plain-SOAP step. zeep cannot send MTOM."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import zeep
import zeep.exceptions
from lxml import etree
from zeep.plugins import HistoryPlugin
from zeep.transports import Transport

from dynasoar import ns

from .conftest import Interop
from .results import Results
from .scenario import Peer, check

pytestmark = pytest.mark.integration

STACK = "zeep"
PORTS = {"1.1": "Soap11", "1.2": "Soap12"}


class RecordingTransport(Transport):
    """zeep's transport, keeping the HTTP headers of the last exchange."""

    sent: dict[str, str]
    got: dict[str, str]

    def post(self, address: str, message: bytes, headers: dict[str, str]) -> requests.Response:
        self.sent = dict(headers)
        response: requests.Response = super().post(address, message, headers)
        self.got = {k.lower(): v for k, v in response.headers.items()}
        return response


class ZeepPeer:
    def __init__(self, wsdl: str, service: str, port: str) -> None:
        self.transport = RecordingTransport()
        self.history = HistoryPlugin()
        self.client = zeep.Client(wsdl, transport=self.transport, plugins=[self.history])
        self.proxy = self.client.bind(service, port)

    def call(self, operation: str, address: str | None = None, **kwargs: Any) -> dict[str, Any]:
        proxy = self.proxy
        if address is not None:
            proxy = self.client.create_service(proxy._binding.name, address)
        step: dict[str, Any] = {}
        try:
            result = getattr(proxy, operation)(**kwargs)
            step["ok"] = True
            step["result"] = result
        except zeep.exceptions.Fault as fault:
            step.update(ok=False, fault=True, reason=fault.message)
            step["code"] = fault.code
            subcodes = fault.subcodes or []
            if subcodes:
                step["subcode"] = subcodes[0].text  # an lxml QName: "{ns}local"
            if fault.detail is not None:
                step["detail"] = etree.tostring(fault.detail).decode()
        sent = self.history.last_sent["envelope"]
        step["version"] = "1.2" if etree.QName(sent).namespace == ns.SOAP12_ENV else "1.1"
        step["message_id"] = sent.findtext(f".//{{{ns.WSA}}}MessageID")
        received = self.history.last_received["envelope"]
        step["relates_to"] = received.findtext(f".//{{{ns.WSA}}}RelatesTo")
        step["reply_action"] = received.findtext(f".//{{{ns.WSA}}}Action")
        sent_headers = {k.lower(): v for k, v in self.transport.sent.items()}
        step["sent_content_type"] = sent_headers.get("content-type", "")
        step["sent_soapaction"] = sent_headers.get("soapaction", "")
        step["cold"] = self.transport.got.get("x-dynasoar-cold")
        step["deployment"] = self.transport.got.get("x-dynasoar-deployment")
        return step


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_zeep(interop: Interop, results: Results, version: str) -> None:
    results.version(STACK, zeep.__version__)
    results.unsupported(STACK, "MTOM", "zeep can receive MTOM but not send it")
    name = f"EchoZeep{version.replace('.', '')}"
    url = interop.publish_echo(name)
    port = PORTS[version]
    echo = ZeepPeer(url + "?wsdl", "EchoService", f"Echo{port}")
    provider = ZeepPeer(
        interop.sp + "/dynasoar/ServiceProvider?wsdl",
        "ServiceProvider",
        f"ServiceProvider{port}",
    )

    steps = {
        "cold": echo.call("Echo", text="cold from zeep"),
        "warm": echo.call("Echo", text="warm from zeep"),
        "service_fault": echo.call("Compute", millis=-1),
        "provider_fault": echo.call(
            "Echo", address=f"{interop.sp}/services/{interop.broken}", text="to a broken package"
        ),
        "list_services": provider.call("ListServices"),
    }
    for step in steps.values():
        if isinstance(step.get("result"), str):
            step["text"] = step.pop("result")
    steps["list_services"]["services"] = ",".join(
        s.name for s in steps["list_services"].pop("result", None) or []
    )
    assert echo.proxy._binding.name.localname == f"Echo{port}Binding"
    assert echo.proxy._binding_options["address"] == url
    how = {"WS-A": "zeep adds To/Action/MessageID itself for operations with wsaw:Action"}
    check(results, Peer(STACK, version, name, steps, how=how))
