"""A code service cannot read what it should not: it runs as a user of its own, under limits,
in a directory that is its alone. A package that tries reads nothing of the host's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dynasoar.consumer.call import call

from .conftest import Cluster, make_package

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs a root HP")

SNOOP = '''
"""Echo, plus what it found when it tried to read the host's files (asked by "report-please")."""
import json, os, resource
from xml.sax.saxutils import escape

import echo_service


def _try(path):
    try:
        if os.path.isdir(path):
            return "listed %d" % len(os.listdir(path))
        with open(path, "rb") as f:
            return "read %d" % len(f.read())
    except OSError as exc:
        return type(exc).__name__


REPORT = json.dumps({
    "uid": os.getuid(),
    "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    "nproc": resource.getrlimit(resource.RLIMIT_NPROC)[0],
    "tries": {p: _try(p) for p in open("targets.txt").read().split()},
})
ANSWER = (
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
    '<e:EchoResponse xmlns:e="urn:dynasoar:samples:echo"><e:text>%s</e:text>'
    '</e:EchoResponse></s:Body></s:Envelope>' % escape(REPORT)
).encode()


def application(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    if b"report-please" in body:
        start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8")])
        return [ANSWER]
    import io
    environ["wsgi.input"] = io.BytesIO(body)
    return echo_service.application(environ, start_response)
'''


def test_a_package_cannot_read_the_hosts_secrets(cluster: Cluster, tmp_path: Path) -> None:
    hp_data = cluster.work / "hp1"
    secret = hp_data / "hp.key"
    secret.write_text("-----BEGIN PRIVATE KEY----- not for services")
    secret.chmod(0o600)
    # another tenant's deployment on the same host
    cluster.client.publish(make_package(tmp_path, "echo", "Tenant"))
    cluster.client.call("Deploy", name="Tenant", host=cluster.hps[0].url)
    (tenant,) = cluster.client.call("ListDeployments")
    tenant_dirs = [p for p in Path("/tmp").glob("dynasoar-deployments-*/*") if p.name == tenant.id]
    tenant_dirs += list(hp_data.glob(f"deployments/{tenant.id}"))
    assert tenant_dirs, "the tenant's deployment directory should exist"
    targets = [
        str(secret),
        str(hp_data / "spool"),
        str(hp_data / "logs"),  # every deployment's output, its own included
        str(hp_data / "logs" / tenant.id),
        *(str(p) for p in (hp_data / "logs" / tenant.id).iterdir()),
        str(tenant_dirs[0]),
        str(tenant_dirs[0] / "pkg" / "echo_service.py"),
        str(cluster.work / "sp" / "registry.sqlite"),
        "/root/.ssh",
        "/etc/shadow",
    ]

    snoop = make_package(tmp_path, "echo", "Snoop")
    (snoop / "snoop.py").write_text(SNOOP)
    (snoop / "targets.txt").write_text("\n".join(targets))
    manifest = snoop / "dynasoar.toml"
    manifest.write_text(
        manifest.read_text().replace("echo_service:application", "snoop:application")
    )
    cluster.client.publish(snoop)
    cluster.client.call("Deploy", name="Snoop", host=cluster.hps[0].url)
    wsdl = cluster.service_url("Snoop") + "?wsdl"
    report = json.loads(call(wsdl, "Echo", ["text=report-please"]).value)
    assert report["uid"] != 0
    assert report["nofile"] <= 256 and report["nproc"] <= 64
    leaks = {p: r for p, r in report["tries"].items() if not r.endswith("Error")}
    assert leaks == {}, leaks
    assert call(wsdl, "Echo", ["text=still serves"]).value == "still serves"
