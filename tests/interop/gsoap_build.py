"""Builds the gSOAP peer from the WSDLs a running SP serves: ``wsdl2h`` (one header for the Echo
service and the management port, one proxy class per binding with ``-N``, WS-Addressing 1.0 via
``#import "wsa5.h"``), then ``soapcpp2 -1`` (SOAP 1.1) or ``-2`` (SOAP 1.2) and g++ with
``-lgsoap++``.

Why -1/-2: for a WSDL 1.1 document wsdl2h cannot tell a soap12 binding from a soap one (every
operation gets protocol "SOAP") and imports soap12.h as soon as the soap12 namespace is declared,
so soapcpp2 would make *every* proxy speak SOAP 1.2. The SOAP version is chosen explicitly.

Builds are cached under build/interop/gsoap-* keyed by a hash of the served documents (their
addresses blanked: the SP's port changes every run), client.cpp and the toolchain, so a rerun
against the same contracts costs nothing.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

from .results import ROOT

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "gsoap" / "client.cpp"
BUILD = ROOT / "build" / "interop"
GSOAP_SHARE = Path("/usr/share/gsoap")
#: Our prefixes in the generated code, instead of wsdl2h's ns1, ns2 ... (client.cpp uses them).
PREFIXES = (
    'echo = "urn:dynasoar:samples:echo"\n'
    'sp = "urn:dynasoar:2006:provider"\n'
    'dyn = "urn:dynasoar:2006"\n'
)
CXXFLAGS = ["-O0", "-w", "-DSOAP_WSA_2005"]
ADDRESS = re.compile(rb'(<(?:\w+:)?address\s+location=")[^"]*(")')


def tools_missing() -> list[str]:
    missing = [t for t in ("wsdl2h", "soapcpp2", "g++") if shutil.which(t) is None]
    if not (GSOAP_SHARE / "plugin" / "wsaapi.c").exists():
        missing.append("gSOAP's plugin sources (libgsoap-dev)")
    return missing


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as reply:  # 127.0.0.1 only
        data: bytes = reply.read()
        return data


def _fingerprint(documents: list[bytes], version: str) -> str:
    digest = hashlib.sha256()
    for document in documents:
        digest.update(ADDRESS.sub(rb"\1-\2", document))
    digest.update(CLIENT.read_bytes())
    digest.update(PREFIXES.encode())
    digest.update(" ".join([version, *CXXFLAGS]).encode())
    tool = subprocess.run(["soapcpp2", "-V"], capture_output=True, text=True, check=False)
    digest.update((tool.stdout + tool.stderr).encode())
    return digest.hexdigest()[:16]


def _run(args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, cwd=cwd, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _wait(process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    if process.wait(timeout=300) != 0:
        raise AssertionError(f"{what} failed:\n{log.read_text(errors='replace')[-4000:]}")


def build(
    sp: str, echo_service: str, versions: tuple[str, ...] = ("1.1", "1.2")
) -> dict[str, Path]:
    """The client binary per SOAP version, built now or found in the cache."""
    echo_wsdl = f"{sp}/services/{echo_service}?wsdl"
    sp_wsdl = f"{sp}/dynasoar/ServiceProvider?wsdl"
    documents = [_get(echo_wsdl), _get(sp_wsdl)]
    for location in sorted(set(re.findall(rb'schemaLocation="([^"]+)"', documents[1]))):
        documents.append(_get(f"{sp}/dynasoar/{location.decode()}"))
    binaries: dict[str, Path] = {}
    pending: dict[str, Path] = {}
    for version in versions:
        out = BUILD / f"gsoap-{version}-{_fingerprint(documents, version)}"
        binaries[version] = out / "client"
        if not binaries[version].exists():
            pending[version] = out
    if not pending:
        return binaries

    work = BUILD / "gsoap-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    typemap = work / "typemap.dat"
    typemap.write_text((GSOAP_SHARE / "WS" / "typemap.dat").read_text() + PREFIXES)
    log = work / "wsdl2h.log"
    # From the SP's URLs, as a user would: wsdl2h fetches the WSDLs and the schemas they import.
    _wait(
        _run(
            ["wsdl2h", "-x", "-Nsvc", "-t", str(typemap), "-o", "peer.h", echo_wsdl, sp_wsdl],
            work,
            log,
        ),
        log,
        "wsdl2h",
    )
    with (work / "peer.h").open("a") as header:
        header.write('\n#import "wsa5.h"  // WS-Addressing 1.0: the wsa plugin (wsaapi.c)\n')

    compiles = []
    for version, out in pending.items():
        gen = work / f"soap{version.replace('.', '')}"
        gen.mkdir()
        log = gen / "soapcpp2.log"
        flag = "-1" if version == "1.1" else "-2"
        _wait(
            _run(
                [
                    "soapcpp2",
                    flag,
                    "-j",
                    "-C",
                    "-x",
                    "-L",
                    "-d",
                    str(gen),
                    f"-I{GSOAP_SHARE / 'import'}",
                    str(work / "peer.h"),
                ],
                work,
                log,
            ),
            log,
            f"soapcpp2 {flag}",
        )
        binding = "Soap11" if version == "1.1" else "Soap12"
        # Every generated .nsmap holds the whole table; client.cpp includes it once.
        shutil.copy(gen / f"Echo{binding}Binding.nsmap", gen / "namespaces.nsmap")
        defines = ["-DPEER_SOAP12"] if version == "1.2" else []
        args = [
            "g++",
            *CXXFLAGS,
            *defines,
            f"-I{gen}",
            f"-I{GSOAP_SHARE / 'plugin'}",
            f"-I{GSOAP_SHARE / 'import'}",
            "-o",
            str(gen / "client"),
            str(CLIENT),
            str(gen / "soapC.cpp"),
            str(gen / f"soapEcho{binding}BindingProxy.cpp"),
            str(gen / f"soapServiceProvider{binding}BindingProxy.cpp"),
            "-x",
            "c++",
            str(GSOAP_SHARE / "plugin" / "wsaapi.c"),
            "-lgsoap++",
        ]
        log = gen / "g++.log"
        compiles.append((version, out, gen, _run(args, work, log), log))
    for version, out, gen, process, log in compiles:  # both versions compile at once
        _wait(process, log, f"g++ (SOAP {version})")
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(gen, out)
        (out / "peer.h").write_bytes((work / "peer.h").read_bytes())
    shutil.rmtree(work, ignore_errors=True)
    return binaries
