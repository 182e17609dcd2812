"""gSOAP: a C++ client generated with wsdl2h + soapcpp2 from the WSDLs the SP serves, compiled
with g++ and linked with -lgsoap++ (see gsoap_build.py), once as a SOAP 1.1 client (-1) and once
as SOAP 1.2 (-2). WS-Addressing 1.0 from gSOAP's wsa plugin; the package is published with
gSOAP's own MTOM (SOAP_ENC_MTOM, the xsd:base64Binary sent as an xop:Include attachment).
The scenario is in gsoap/client.cpp."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from . import gsoap_build
from .conftest import Interop
from .results import Results
from .scenario import Peer, Step, check

pytestmark = pytest.mark.integration

STACK = "gSOAP"
SERVICES = {"1.1": "EchoGsoap11", "1.2": "EchoGsoap12"}


@pytest.fixture(scope="module")
def clients(interop: Interop) -> dict[str, Path]:
    missing = gsoap_build.tools_missing()
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/install-interop.sh)")
    for name in SERVICES.values():
        interop.publish_echo(name)
    return gsoap_build.build(interop.sp, SERVICES["1.1"])


def run_client(binary: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    steps: dict[str, Any] = json.loads(done.stdout)
    return steps


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_gsoap(interop: Interop, clients: dict[str, Path], results: Results, version: str) -> None:
    tool = subprocess.run(["soapcpp2", "-V"], capture_output=True, text=True, check=False)
    results.version(STACK, (tool.stdout or tool.stderr).strip().splitlines()[-1])
    name = SERVICES[version]
    mtom_name = f"EchoGsoapMtom{version.replace('.', '')}"
    archive = interop.echo_archive(mtom_name)

    steps = run_client(clients[version], interop.sp, name, interop.broken, str(archive))

    namespaces: dict[str, str] = steps.pop("namespaces")

    def resolve(text: str, step: Step) -> str | None:
        # gSOAP rewrites QName values to the prefixes of its own namespace table.
        prefix, _, localname = text.rpartition(":")
        uri = namespaces.get(prefix)
        return None if uri is None else "{%s}%s" % (uri, localname)

    how = {
        "SOAP 1.1": "soapcpp2 -1 and the Soap11Binding proxy classes (wsdl2h -N)",
        "SOAP 1.2": "soapcpp2 -2 and the Soap12Binding proxy classes (wsdl2h -N)",
        "WS-A": 'gSOAP\'s wsa plugin (wsaapi.c, #import "wsa5.h")',
        "MTOM": "SOAP_ENC_MTOM: the xsd:base64Binary sent as an xop:Include attachment",
    }
    check(
        results,
        Peer(STACK, version, name, steps, resolve=resolve, mtom_name=mtom_name, how=how),
    )


def test_wsdl2h_alone_makes_every_proxy_soap12(tmp_path: Path) -> None:
    """Why gsoap_build passes -1/-2: from our WSDL (a soap and a soap12 binding), wsdl2h imports
    soap12.h and marks every operation plain "SOAP", so soapcpp2 without -1 makes even the
    *Soap11Binding* proxy send SOAP 1.2 envelopes. The choice has to be explicit."""
    missing = gsoap_build.tools_missing()
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/install-interop.sh)")
    wsdl = gsoap_build.ROOT / "deploy" / "services" / "echo" / "Echo.wsdl"
    subprocess.run(
        ["wsdl2h", "-x", "-Nsvc", "-o", "echo.h", str(wsdl)],
        cwd=tmp_path,
        capture_output=True,
        check=True,
    )
    header = (tmp_path / "echo.h").read_text()
    assert '#import "soap12.h"' in header
    assert "method-protocol:\tEcho SOAP\n" in header  # neither SOAP1.1 nor SOAP1.2
    for flag, envelope in (("", "soap-envelope"), ("-1", "soap/envelope/")):
        out = tmp_path / (flag or "default")
        out.mkdir()
        args = ["soapcpp2", "-j", "-C", "-x", "-L", "-d", str(out)]
        args += [flag] if flag else []
        args += [f"-I{gsoap_build.GSOAP_SHARE / 'import'}", "echo.h"]
        subprocess.run(args, cwd=tmp_path, capture_output=True, check=True)
        nsmap = (out / "EchoSoap11Binding.nsmap").read_text()
        env_line = next(line for line in nsmap.splitlines() if '"SOAP-ENV"' in line)
        assert env_line.split('"')[3].endswith(envelope), env_line
