"""node soap (npm ``soap``): clients built by node-soap from the WSDLs the SP serves, on the
SOAP 1.1 port or the SOAP 1.2 port (``forceSoap12Headers``), WS-Addressing through its
``addSoapHeader`` hook, and a package published over MTOM with node-soap's own ``attachments``
option (it builds the multipart/related body itself). The scenario is in node/client.js."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import Interop, require
from .results import Results
from .scenario import Peer, Step, check

pytestmark = pytest.mark.integration

STACK = "node soap"
NODE_DIR = Path(__file__).resolve().parent / "node"
SOAP_PACKAGE = NODE_DIR / "node_modules" / "soap" / "package.json"


def _resolve(text: str, step: Step) -> str | None:
    """A prefixed QName node-soap gives as text, resolved against the fault's own bytes."""
    prefix, _, localname = text.rpartition(":")
    body = str(step.get("body") or "")
    declared = re.search(r'xmlns:%s="([^"]*)"' % re.escape(prefix), body) if prefix else None
    return "{%s}%s" % (declared.group(1), localname) if declared else None


def run_client(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        ["node", str(NODE_DIR / "client.js"), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    steps: dict[str, Any] = json.loads(done.stdout)
    return steps


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_node_soap(interop: Interop, results: Results, version: str) -> None:
    require("node")
    if not SOAP_PACKAGE.exists():
        pytest.skip("npm soap is not installed in tests/interop/node (scripts/install-interop.sh)")
    results.version(STACK, json.loads(SOAP_PACKAGE.read_text())["version"])
    suffix = version.replace(".", "")
    name, mtom_name = f"EchoNode{suffix}", f"EchoNodeMtom{suffix}"
    interop.publish_echo(name)
    archive = interop.echo_archive(mtom_name)

    steps = run_client(
        {
            "sp": interop.sp,
            "service": name,
            "broken": interop.broken,
            "version": version,
            "package": str(archive),
        }
    )

    assert steps["ports"] == ["EchoSoap11", "EchoSoap12"]
    if version == "1.2":
        results.note(
            STACK,
            'node-soap labels an MTOM message start-info="text/xml" and its root part '
            'type="text/xml" even for SOAP 1.2; the SP reads the version from the envelope',
        )
    how = {
        "WS-A": "headers from a function given to node-soap's addSoapHeader",
        "MTOM": "node-soap's attachments option builds the multipart/related body; the body "
        "carries the xop:Include as raw XML",
    }
    check(
        results,
        Peer(STACK, version, name, steps, resolve=_resolve, mtom_name=mtom_name, how=how),
    )
