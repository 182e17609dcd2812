"""The sample packages in deploy/services/ serve their WSDLs over real HTTP, SOAP 1.1 and 1.2.

Each package is loaded the way a Host Provider's runner does it (the `[code] app` of its
`dynasoar.toml`, imported from the package root) and served by waitress on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests
import zeep
from lxml import etree
from waitress import wasyncore
from waitress.server import create_server
from zeep.plugins import HistoryPlugin, Plugin
from zeep.transports import Transport

SERVICES = Path(__file__).resolve().parents[2] / "deploy" / "services"

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
XSD = "http://www.w3.org/2001/XMLSchema"
ECHO_NS = "urn:dynasoar:samples:echo"
COUNTER_NS = "urn:dynasoar:samples:counter"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class SoapVersion:
    binding: str  # suffix of the WSDL binding names
    envelope_ns: str
    media_type: str
    sender_code: str  # the fault code of a client's mistake

    def content_type(self, action: str) -> str:
        if self.envelope_ns == SOAP12_ENV:
            return f'{self.media_type}; charset=utf-8; action="{action}"'
        return f"{self.media_type}; charset=utf-8"

    def headers(self, action: str) -> dict[str, str]:
        headers = {"Content-Type": self.content_type(action)}
        if self.envelope_ns == SOAP11_ENV:
            headers["SOAPAction"] = f'"{action}"'
        return headers

    def envelope(self, body: str) -> bytes:
        return (
            f'<?xml version="1.0" encoding="UTF-8"?>'
            f'<env:Envelope xmlns:env="{self.envelope_ns}"><env:Body>{body}</env:Body>'
            f"</env:Envelope>"
        ).encode()


SOAP11 = SoapVersion("Soap11Binding", SOAP11_ENV, "text/xml", "Client")
SOAP12 = SoapVersion("Soap12Binding", SOAP12_ENV, "application/soap+xml", "Sender")
each_version = pytest.mark.parametrize(
    "version", [pytest.param(SOAP11, id="soap11"), pytest.param(SOAP12, id="soap12")]
)

_loads = itertools.count()


@dataclass(frozen=True)
class Package:
    root: Path
    manifest: dict[str, Any]
    module: ModuleType
    application: WsgiApp

    @property
    def name(self) -> str:
        return str(self.manifest["service"]["name"])

    @property
    def wsdl(self) -> Path:
        return self.root / str(self.manifest["service"]["wsdl"])


def load_package(directory: str) -> Package:
    """Import the package's `[code] app` afresh (its own module object, so its own state)."""
    root = SERVICES / directory
    manifest = tomllib.loads((root / "dynasoar.toml").read_text())
    module_name, _, attribute = manifest["code"]["app"].partition(":")
    unique_name = f"_dynasoar_sample_{module_name}_{next(_loads)}"
    spec = importlib.util.spec_from_file_location(unique_name, root / f"{module_name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique_name] = module
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:  # no __pycache__ left inside the package (it is published as it is on disk)
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes_bytecode
    return Package(root, manifest, module, getattr(module, attribute))


@contextmanager
def serving(package: Package) -> Iterator[str]:
    """Serve the package with waitress on a free port; yields its URL.

    The loop runs in short rounds until told to stop, and the server is closed from here once
    it has: no write to waitress's trigger pipe, whose end may already be gone at teardown.
    """
    server = create_server(package.application, host="127.0.0.1", port=0, threads=4)
    stopping = threading.Event()

    def run() -> None:
        while not stopping.is_set():
            wasyncore.loop(timeout=0.05, map=server._map, use_poll=True, count=1)

    thread = threading.Thread(target=run, name=f"waitress-{package.name}", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}/services/{package.name}"
    finally:
        stopping.set()
        thread.join(timeout=5)
        assert not thread.is_alive(), "the waitress loop did not stop within 5 s"
        wasyncore.close_all(server._map)
        server.task_dispatcher.shutdown()


@contextmanager
def zeep_service(
    served: Served, version: SoapVersion, plugins: list[Plugin] | None = None
) -> Iterator[Any]:
    """A zeep proxy of the package's WSDL binding for `version`, pointed at the test server."""
    wsdl = served.package.wsdl
    tns = etree.parse(str(wsdl)).getroot().get("targetNamespace")
    binding = f"{{{tns}}}{served.package.name}{version.binding}"
    with requests.Session() as session:
        client = zeep.Client(str(wsdl), transport=Transport(session=session), plugins=plugins)
        yield client.create_service(binding, served.url)


def post(url: str, version: SoapVersion, action: str, body: bytes) -> requests.Response:
    return requests.post(url, data=body, headers=version.headers(action), timeout=30)


def resolve(element: etree._Element, text: str) -> etree.QName:
    prefix, _, local = text.strip().rpartition(":")
    return etree.QName(element.nsmap.get(prefix or None), local)


def fault_code(response: requests.Response, version: SoapVersion) -> etree.QName:
    """The top-level fault code (SOAP 1.1 "Client.X" counts as Client)."""
    envelope = etree.fromstring(response.content)
    fault = envelope.find(f"{{{version.envelope_ns}}}Body/{{{version.envelope_ns}}}Fault")
    assert fault is not None, response.text
    if version is SOAP11:
        code = fault.find("faultcode")
    else:
        code = fault.find(f"{{{SOAP12_ENV}}}Code/{{{SOAP12_ENV}}}Value")
    assert code is not None and code.text
    name = resolve(code, code.text)
    return etree.QName(name.namespace, name.localname.split(".", 1)[0])


def body_child(response: requests.Response, version: SoapVersion) -> etree._Element:
    envelope = etree.fromstring(response.content)
    body = envelope.find(f"{{{version.envelope_ns}}}Body")
    assert body is not None and len(body) == 1, response.text
    return body[0]


@dataclass(frozen=True)
class Served:
    package: Package
    url: str


@pytest.fixture(scope="module")
def echo() -> Iterator[Served]:
    package = load_package("echo")
    with serving(package) as url:
        yield Served(package, url)


@pytest.fixture
def counter() -> Iterator[Served]:
    package = load_package("counter")  # a fresh module: the count starts at zero
    with serving(package) as url:
        yield Served(package, url)


# --- packages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("directory", "name", "stateless"), [("echo", "Echo", True), ("counter", "Counter", False)]
)
def test_manifest_matches_package(directory: str, name: str, stateless: bool) -> None:
    package = load_package(directory)
    service = package.manifest["service"]

    assert (service["name"], service["version"], service["kind"]) == (name, "1.0", "code")
    assert service["stateless"] is stateless
    assert package.wsdl.is_file()
    assert callable(package.application)
    wsdl = etree.parse(str(package.wsdl))
    addresses = wsdl.xpath("//*[local-name()='address']/@location")
    assert addresses == [f"http://localhost/services/{name}"] * 2


# --- the wire matches the WSDL ------------------------------------------------------------

WIRE = [
    ("echo", "Echo", f'<e:Echo xmlns:e="{ECHO_NS}"><e:text>wire</e:text></e:Echo>', ["text"]),
    (
        "echo",
        "Compute",
        f'<e:Compute xmlns:e="{ECHO_NS}"><e:millis>1</e:millis></e:Compute>',
        ["iterations"],
    ),
    ("counter", "Increment", f'<c:Increment xmlns:c="{COUNTER_NS}"/>', ["value"]),
]


def wsdl_schema(package: Package) -> etree.XMLSchema:
    types = etree.parse(str(package.wsdl)).find(f"{{{WSDL}}}types/{{{XSD}}}schema")
    assert types is not None
    return etree.XMLSchema(types)


@each_version
@pytest.mark.parametrize(
    ("directory", "operation", "request_body", "children"), WIRE, ids=[w[1] for w in WIRE]
)
def test_wire_format_matches_the_wsdl(
    version: SoapVersion, directory: str, operation: str, request_body: str, children: list[str]
) -> None:
    package = load_package(directory)
    schema = wsdl_schema(package)
    tns = COUNTER_NS if directory == "counter" else ECHO_NS
    request = version.envelope(request_body)
    schema.assertValid(etree.fromstring(request_body))

    with serving(package) as url:
        response = post(url, version, f"{tns}/{operation}", request)

    assert response.status_code == 200, response.text
    reply = body_child(response, version)
    assert reply.tag == f"{{{tns}}}{operation}Response"
    assert [child.tag for child in reply] == [f"{{{tns}}}{name}" for name in children]
    schema.assertValid(reply)


# --- Echo ----------------------------------------------------------------------------------


@each_version
@pytest.mark.parametrize("text", ["hello", "héllo ☃ 日本語 𝄞", "  <&> ]]> \n\t "])
def test_echo_round_trips_text(echo: Served, version: SoapVersion, text: str) -> None:
    with zeep_service(echo, version) as service:
        assert service.Echo(text=text) == text


@each_version
def test_zeep_adds_addressing_from_the_wsdl(echo: Served, version: SoapVersion) -> None:
    # zeep sends wsa:Action/MessageID/To by itself whenever the portType declares wsaw:Action;
    # the service accepts them and answers without addressing headers.
    history = HistoryPlugin()
    with zeep_service(echo, version, plugins=[history]) as service:
        assert service.Echo(text="addressed") == "addressed"

    sent = history.last_sent["envelope"]
    assert sent.findtext(f".//{{{WSA}}}Action") == f"{ECHO_NS}/Echo"
    assert sent.findtext(f".//{{{WSA}}}To") == echo.url
    assert history.last_received["envelope"].find(f".//{{{WSA}}}RelatesTo") is None


@each_version
def test_compute_burns_cpu(echo: Served, version: SoapVersion) -> None:
    with zeep_service(echo, version) as service:
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        iterations = service.Compute(millis=50)
        cpu_used = time.process_time() - cpu_before
        wall_used = time.perf_counter() - wall_before

    assert iterations > 0
    # The server is a thread of this process: its CPU time shows in ours.
    assert cpu_used >= 0.045
    assert wall_used >= 0.045


@each_version
@pytest.mark.parametrize("millis", [-1, 60_001])
def test_compute_refuses_out_of_range(echo: Served, version: SoapVersion, millis: int) -> None:
    with (
        zeep_service(echo, version) as service,
        pytest.raises(zeep.exceptions.Fault) as raised,
    ):
        service.Compute(millis=millis)

    assert "60000" in raised.value.message
    code = raised.value.code
    assert code.split(":")[-1].split(".")[0] == version.sender_code


@each_version
def test_plain_soap_without_addressing(echo: Served, version: SoapVersion) -> None:
    request = version.envelope(f'<e:Echo xmlns:e="{ECHO_NS}"><e:text>plain</e:text></e:Echo>')

    response = post(echo.url, version, f"{ECHO_NS}/Echo", request)

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith(version.media_type)
    envelope = etree.fromstring(response.content)
    assert envelope.xpath("//*[namespace-uri()=$wsa]", wsa=WSA) == []
    reply = body_child(response, version)
    assert reply.tag == f"{{{ECHO_NS}}}EchoResponse"
    assert [(child.tag, child.text) for child in reply] == [(f"{{{ECHO_NS}}}text", "plain")]


@each_version
def test_empty_text_is_echoed_as_an_empty_element(echo: Served, version: SoapVersion) -> None:
    # On the wire, not through zeep: zeep reads an empty xs:string element back as None.
    request = version.envelope(f'<e:Echo xmlns:e="{ECHO_NS}"><e:text/></e:Echo>')

    response = post(echo.url, version, f"{ECHO_NS}/Echo", request)

    assert response.status_code == 200, response.text
    text = body_child(response, version).find(f"{{{ECHO_NS}}}text")
    assert text is not None and not text.text


ECHO_X = f'<e:Echo xmlns:e="{ECHO_NS}"><e:text>x</e:text></e:Echo>'
MALFORMED: dict[str, Callable[[SoapVersion], bytes]] = {
    "truncated": lambda v: v.envelope(ECHO_X)[:-30],
    "not-xml": lambda v: b"this is not XML",
    "not-an-envelope": lambda v: ECHO_X.encode(),
    "empty-body": lambda v: v.envelope(""),
    "missing-argument": lambda v: v.envelope(f'<e:Echo xmlns:e="{ECHO_NS}"/>'),
    "unknown-operation": lambda v: v.envelope(f'<e:Nope xmlns:e="{ECHO_NS}"/>'),
}


@each_version
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_request_gets_a_sender_fault(
    echo: Served, version: SoapVersion, case: str
) -> None:
    response = post(echo.url, version, f"{ECHO_NS}/Echo", MALFORMED[case](version))

    assert response.status_code == 500
    assert response.headers["Content-Type"].startswith(version.media_type)
    assert fault_code(response, version) == etree.QName(version.envelope_ns, version.sender_code)


def test_get_is_not_allowed(echo: Served) -> None:
    response = requests.get(echo.url + "?wsdl", timeout=30)

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


def test_unknown_media_type_is_refused(echo: Served) -> None:
    body = SOAP11.envelope(f'<e:Echo xmlns:e="{ECHO_NS}"><e:text>x</e:text></e:Echo>')

    response = requests.post(
        echo.url, data=body, headers={"Content-Type": "application/json"}, timeout=30
    )

    assert response.status_code == 415


# --- Counter -------------------------------------------------------------------------------


@each_version
def test_counter_increments_from_one(counter: Served, version: SoapVersion) -> None:
    with zeep_service(counter, version) as service:
        assert [service.Increment() for _ in range(3)] == [1, 2, 3]


def test_concurrent_increments_count_every_call(counter: Served) -> None:
    request = SOAP11.envelope(f'<c:Increment xmlns:c="{COUNTER_NS}"/>')

    def increment(_: int) -> int:
        response = post(counter.url, SOAP11, f"{COUNTER_NS}/Increment", request)
        assert response.status_code == 200, response.text
        return int(body_child(response, SOAP11)[0].text or "")

    with ThreadPoolExecutor(max_workers=8) as pool:
        values = list(pool.map(increment, range(64)))

    assert sorted(values) == list(range(1, 65))


def test_counter_lock_under_contention() -> None:
    shared = load_package("counter").module.Counter()
    per_thread = 2_000

    def hammer(_: int) -> list[int]:
        return [shared.increment() for _ in range(per_thread)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        values = [v for chunk in pool.map(hammer, range(8)) for v in chunk]

    assert sorted(values) == list(range(1, 8 * per_thread + 1))
