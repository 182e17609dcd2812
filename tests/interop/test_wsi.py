"""WS-I Basic Profile 1.1 for our WSDLs: the files (wsdl/*.wsdl, deploy/services/*/*.wsdl) and the
documents the running SP and HP serve for them; and the checker itself, on broken copies."""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from dynasoar.paths import samples_dir

from .conftest import Interop
from .results import ROOT
from .wsi import WSDL, Violation, check

FILES = sorted((ROOT / "wsdl").glob("*.wsdl")) + sorted(
    (ROOT / "deploy" / "services").glob("*/*.wsdl")
)
ECHO = ROOT / "deploy" / "services" / "echo" / "Echo.wsdl"


def load_file(location: str, base: str) -> tuple[bytes, str]:
    assert "://" not in location, f"{base} imports {location} from the network"
    path = (Path(base).parent / location).resolve()
    return path.read_bytes(), str(path)


def load_url(location: str, base: str) -> tuple[bytes, str]:
    url = urllib.parse.urljoin(base, location)
    assert url.startswith("http://127.0.0.1:"), url
    with urllib.request.urlopen(url, timeout=30) as reply:
        data: bytes = reply.read()
    return data, url


def violations(document: bytes, location: str = str(ECHO)) -> list[str]:
    return [str(v) for v in check(document, location, load_file)]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_wsdl_files_pass_basic_profile(path: Path) -> None:
    assert violations(path.read_bytes(), str(path)) == []


@pytest.mark.integration
def test_served_wsdls_pass_basic_profile(interop: Interop) -> None:
    for sample in ("echo", "counter"):
        interop.cluster.client.publish(samples_dir() / sample)
    served = [
        f"{interop.sp}/dynasoar/ServiceProvider?wsdl",
        f"{interop.cluster.hps[0].url}/dynasoar/HostProvider?wsdl",
        f"{interop.sp}/services/Echo?wsdl",
        f"{interop.sp}/services/Counter?wsdl",
    ]
    for url in served:
        document, _ = load_url(url, url)
        found: list[Violation] = check(document, url, load_url)
        assert [str(v) for v in found] == [], url


# --- the checker catches what it should: one broken copy of Echo.wsdl per rule ---------------

ORIGINAL = ECHO.read_bytes().decode()


def _mutate(old: str, new: str, count: int = 1) -> str:
    assert old in ORIGINAL, old
    return ORIGINAL.replace(old, new, count)


BROKEN = {
    "R2706 encoded use": (
        _mutate('<wsdl:input><soap:body use="literal"/>', '<wsdl:input><soap:body use="encoded"/>'),
        "R2706",
    ),
    "R1005 encodingStyle": (
        _mutate(
            '<wsdl:input><soap:body use="literal"/>',
            '<wsdl:input><soap:body use="literal" '
            'encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"/>',
        ),
        "R1005",
    ),
    "R2716 namespace on doc/literal body": (
        _mutate(
            '<wsdl:input><soap:body use="literal"/>',
            '<wsdl:input><soap:body use="literal" namespace="urn:x"/>',
        ),
        "R2716",
    ),
    "R2210 two parts": (
        _mutate(
            '<wsdl:part name="parameters" element="tns:Echo"/>',
            '<wsdl:part name="parameters" element="tns:Echo"/>'
            '<wsdl:part name="more" element="tns:Echo"/>',
        ),
        "R2210",
    ),
    "R2204 part by type": (
        _mutate(
            '<wsdl:part name="parameters" element="tns:Echo"/>',
            '<wsdl:part name="parameters" type="xs:string"/>',
        ),
        "R2204",
    ),
    "R2702 transport": (
        _mutate('transport="http://schemas.xmlsoap.org/soap/http"', 'transport="urn:smtp"'),
        "R2702",
    ),
    "R2705 rpc style": (
        _mutate(
            '<soap:operation soapAction="urn:dynasoar:samples:echo/Echo" style="document"/>',
            '<soap:operation soapAction="urn:dynasoar:samples:echo/Echo" style="rpc"/>',
        ),
        "R2705",
    ),
    "no soapAction": (
        _mutate(
            '<soap:operation soapAction="urn:dynasoar:samples:echo/Echo" style="document"/>',
            '<soap:operation style="document"/>',
        ),
        "soapAction",
    ),
    "R2710 same body element twice": (
        _mutate(
            '<wsdl:part name="parameters" element="tns:Compute"/>',
            '<wsdl:part name="parameters" element="tns:Echo"/>',
        ),
        "R2710",
    ),
    "R2003 xsd:import outside a schema": (
        _mutate(
            "<wsdl:types>", '<wsdl:types><xs:import namespace="urn:x" schemaLocation="x.xsd"/>'
        ),
        "R2003",
    ),
    "R2007 wsdl:import without location": (
        _mutate("<wsdl:types>", '<wsdl:import namespace="urn:x"/><wsdl:types>'),
        "R2007",
    ),
    "R2022 wsdl:import after types": (
        _mutate(
            '<wsdl:message name="EchoRequest">',
            '<wsdl:import namespace="urn:x" location="x.wsdl"/><wsdl:message name="EchoRequest">',
        ),
        "R2022",
    ),
    "R2105 schema without targetNamespace": (
        _mutate('<xs:schema targetNamespace="urn:dynasoar:samples:echo"', "<xs:schema"),
        "R2105",
    ),
    "no targetNamespace": (
        _mutate('targetNamespace="urn:dynasoar:samples:echo"\n', "\n"),
        "tns",
    ),
    "R2718 binding lacks an operation": (
        re.sub(
            r'(<wsdl:binding name="EchoSoap11Binding".*?)<wsdl:operation name="Compute">.*?'
            r"</wsdl:operation>",
            r"\1",
            ORIGINAL,
            count=1,
            flags=re.S,
        ),
        "R2718",
    ),
    "soap12 binding with a soap:operation": (
        _mutate(
            '<soap12:operation soapAction="urn:dynasoar:samples:echo/Echo"',
            '<soap:operation soapAction="urn:dynasoar:samples:echo/Echo"',
        ),
        "explicit-binding",
    ),
    "soap12 port with a soap:address": (
        _mutate("<soap12:address location", "<soap:address location"),
        "explicit-binding",
    ),
    "soap12 declared, no soap12 binding": (
        re.sub(
            r'<wsdl:port name="EchoSoap12".*?</wsdl:port>',
            "",
            re.sub(
                r'<wsdl:binding name="EchoSoap12Binding".*?</wsdl:binding>',
                "",
                ORIGINAL,
                flags=re.S,
            ),
            flags=re.S,
        ),
        "explicit-binding",
    ),
}


@pytest.mark.parametrize(("document", "rule"), BROKEN.values(), ids=list(BROKEN))
def test_checker_flags_a_broken_copy(document: str, rule: str) -> None:
    found = check(document.encode(), str(ECHO), _no_imports)
    assert rule in {v.rule for v in found}, [str(v) for v in found]


def _no_imports(location: str, base: str) -> tuple[bytes, str]:
    if location == "x.wsdl":
        return b'<definitions xmlns="%s" targetNamespace="urn:x"/>' % WSDL.encode(), ""
    raise AssertionError(f"unexpected import of {location}")


def test_the_original_is_clean() -> None:
    assert violations(ECHO.read_bytes()) == []
