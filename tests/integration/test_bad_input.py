"""Bad input gets a SOAP fault with the right code and leaves all state as it was."""

from __future__ import annotations

import io
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import dynasoar
from dynasoar import ns
from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.consumer.publish import Upload
from dynasoar.errors import InvalidPackage, RemoteFault

from .conftest import Cluster, make_package
from .wire import ECHO_ACTION, echo_body, envelope, post, wsa_headers

DYN = "{%s}" % ns.DYN
XXE = (
    b'<?xml version="1.0"?><!DOCTYPE s:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
    b'<e:Echo xmlns:e="urn:dynasoar:samples:echo"><e:text>&xxe;</e:text></e:Echo>'
    b"</s:Body></s:Envelope>"
)
LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;'
    b'&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
    b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
    b'<e:Echo xmlns:e="urn:dynasoar:samples:echo"><e:text>&c;</e:text></e:Echo>'
    b"</s:Body></s:Envelope>"
)


def _state(cluster: Cluster) -> tuple[object, ...]:
    client = cluster.client
    services = [(s.name, s.version, s.sha256) for s in client.call("ListServices") or []]
    deployments = [d.id for d in client.call("ListDeployments") or []]
    repository = sorted(
        p.relative_to(cluster.work)
        for p in (cluster.work / "sp").rglob("*")
        if "repository" in p.parts or "spool" in p.parts
    )
    return services, deployments, repository


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            b"<s:Envelope xmlns:s='http://schemas.xmlsoap.org/soap/envelope/'><s:Body><e:Echo",
            DYN + "MalformedMessage",
        ),
        (b"not xml at all", DYN + "MalformedMessage"),
        (XXE, DYN + "MalformedMessage"),
        (LAUGHS, DYN + "MalformedMessage"),
        (
            b"<x:Envelope xmlns:x='urn:not-soap'><x:Body/></x:Envelope>",
            "{%s}VersionMismatch" % ns.SOAP12_ENV,
        ),
        (
            b"<s:Envelope xmlns:s='http://schemas.xmlsoap.org/soap/envelope/'><s:Header/></s:Envelope>",
            DYN + "MalformedMessage",
        ),
    ],
    ids=["truncated", "not-xml", "xxe", "billion-laughs", "not-soap", "no-body"],
)
def test_bad_envelopes_to_a_service(cluster: Cluster, echo: str, body: bytes, code: str) -> None:
    before = _state(cluster)
    reply = post(echo, body, soap_action=ECHO_ACTION)
    assert reply.status in (400, 500)
    assert code in reply.fault_codes()
    assert b"root:" not in reply.body  # the entity was never expanded
    assert _state(cluster) == before


def test_bad_envelope_to_the_management_port(cluster: Cluster) -> None:
    port = cluster.sp.url + "/dynasoar/ServiceProvider"
    reply = post(port, XXE, soap_action=f"{ns.DYN_SP}/ListServices")
    assert DYN + "MalformedMessage" in reply.fault_codes()


def test_not_soap_content_type(cluster: Cluster, echo: str) -> None:
    headers, _ = wsa_headers(to=echo)
    reply = post(echo, envelope(echo_body(), headers), content_type="application/json")
    assert DYN + "InvalidRequest" in reply.fault_codes()


def _tar_with(members: dict[str, bytes], extra: tarfile.TarInfo | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra is not None:
            tar.addfile(extra)
    return buffer.getvalue()


def _echo_files() -> dict[str, bytes]:
    from dynasoar.paths import samples_dir

    root = samples_dir() / "echo"
    return {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def _zip_with(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


BAD_PACKAGES = {
    "no-manifest": lambda: _tar_with(
        {k: v for k, v in _echo_files().items() if k != "dynasoar.toml"}
    ),
    "path-escape": lambda: _tar_with({**_echo_files(), "../../escaped.txt": b"x"}),
    "absolute-path": lambda: _tar_with({**_echo_files(), "/tmp/dynasoar-abs.txt": b"x"}),
    "symlink": lambda: _tar_with(_echo_files(), _symlink("passwd", "/etc/passwd")),
    "zip-escape": lambda: _zip_with({**_echo_files(), "../escaped.txt": b"x"}),
    "not-an-archive": lambda: b"just some bytes",
    "bad-manifest": lambda: _tar_with({**_echo_files(), "dynasoar.toml": b"[service]\nname=1\n"}),
    "bad-wsdl": lambda: _tar_with({**_echo_files(), "Echo.wsdl": b"<nope/>"}),
}


@pytest.mark.parametrize("case", sorted(BAD_PACKAGES))
def test_bad_packages_are_refused_and_leave_nothing(
    cluster: Cluster, tmp_path: Path, case: str
) -> None:
    cluster.client.publish(make_package(tmp_path))  # something already published
    before = _state(cluster)
    archive = tmp_path / "bad.pkg"
    archive.write_bytes(BAD_PACKAGES[case]())
    with pytest.raises(RemoteFault) as refused:  # sent unchecked: the SP must refuse it
        ProviderClient(cluster.sp.url).send(Upload(None, archive))
    assert (ns.DYN, "InvalidPackage") in refused.value.fault.subcodes or (
        (ns.DYN, "PayloadTooLarge") in refused.value.fault.subcodes
    )
    assert _state(cluster) == before
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/dynasoar-abs.txt").exists()


def test_publishing_a_directory_without_manifest_fails_locally(
    tmp_path: Path, cluster: Cluster
) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidPackage):
        cluster.client.publish(tmp_path / "empty")


def test_a_package_that_cannot_start_says_why_without_leaking_the_host(
    cluster: Cluster, tmp_path: Path
) -> None:
    package = make_package(tmp_path, "echo", "Broken")
    (package / "echo_service.py").write_text("import no_such_module_here\n")
    cluster.client.publish(package)
    url = cluster.service_url("Broken")
    reply = post(url, envelope(echo_body()), soap_action=ECHO_ACTION)
    assert DYN + "DeploymentFailed" in reply.fault_codes()
    assert b"ModuleNotFoundError: No module named 'no_such_module_here'" in reply.body
    assert b'File "echo_service.py", line 1, in &lt;module&gt;' in reply.body
    assert_no_host_paths(reply.body, cluster)
    assert not cluster.client.call("ListDeployments")


def assert_no_host_paths(body: bytes, cluster: Cluster) -> None:
    """A fault about a package names the package's files only, never the host's."""
    for host_path in (str(cluster.work), sys.prefix, str(Path(dynasoar.__file__).parent)):
        assert host_path.encode() not in body
    assert b"runner.py" not in body and b"importlib" not in body
    assert b"Traceback (most recent call last)" not in body  # Python's, of the host's frames


SYNTAX_ERROR = """\"\"\"Echo, mistyped.\"\"\"
from echo_service_ok import application


def broken(:
    pass
"""


def test_a_package_with_a_syntax_error_is_refused_naming_file_and_line(
    cluster: Cluster, tmp_path: Path
) -> None:
    package = make_package(tmp_path, "echo", "Typo")
    (package / "echo_service.py").rename(package / "echo_service_ok.py")
    (package / "lib").mkdir()
    (package / "lib" / "helpers.py").write_text(SYNTAX_ERROR.replace("echo_service_ok", "os"))
    (package / "echo_service.py").write_text("from lib import helpers\n")
    cluster.client.publish(package)
    for version in ("1.1", "1.2"):
        reply = post(
            cluster.service_url("Typo"),
            envelope(echo_body(), version=version),
            version=version,
            soap_action=ECHO_ACTION,
        )
        assert DYN + "DeploymentFailed" in reply.fault_codes()
        text = reply.body.decode()
        # the importing frame, then where the syntax error is: file (relative), line, code
        assert 'File "echo_service.py", line 1, in &lt;module&gt;' in text
        assert 'File "lib/helpers.py", line 5\n    def broken(:\n' in text
        assert "SyntaxError: " in text
        assert_no_host_paths(reply.body, cluster)
    assert not cluster.client.call("ListDeployments")
    # the host keeps the failed start's log, which says the same
    (failed, *_) = cluster.client.call("GetLogs", name="Typo").log
    assert failed.state == "failed"
    assert 'File "lib/helpers.py", line 5' in failed.text
    assert 'File "lib/helpers.py", line 5' in failed.reason
