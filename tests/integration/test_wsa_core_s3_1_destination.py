"""WS-Addressing 1.0 Core §3.1, [destination]: the wsa:To of a message names the endpoint it is
meant for, and each actor takes only messages meant for one of its own addresses (the URL it
listens on, and the public URLs its operator configures with ``--public-url``): its scheme,
host, port and path, not the path alone. Otherwise wsa:DestinationUnreachable, and nothing
done. The case that matters: a control message genuinely signed by the SP for one Host
Provider, posted to another that trusts the same SP, undeploys nothing there."""

from __future__ import annotations

import datetime
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from dynasoar import ns
from dynasoar.errors import WSSE
from dynasoar.keys import make_keypair
from dynasoar.paths import samples_dir
from dynasoar.soap import addressing
from dynasoar.soap.envelope import SoapVersion, build_envelope, serialize
from dynasoar.soap.security import Credentials, sign

from .conftest import Cluster, wait_for
from .wire import ECHO_ACTION, echo_body, envelope, post, wsa_headers
from .wsa import HP_PORT, SP_LIST, SP_LIST_ACTION, SP_PORT, header_text

MakeCluster = Callable[..., Cluster]
W = "{%s}" % ns.WSA
VERSIONS = pytest.mark.parametrize("version", ["1.1", "1.2"])


def signed_for(to_hp: str, credentials: Credentials, operation: str, body: str) -> bytes:
    """A control message the SP would send to ``to_hp``, signed with the SP's key."""
    headers = addressing.AddressingHeaders(
        to=to_hp + HP_PORT,
        action=f"{ns.DYN_HP}/{operation}",
        message_id=addressing.new_message_id(),
        present=True,
    )
    root = build_envelope(
        SoapVersion.SOAP12, [etree.fromstring(body)], addressing.write_headers(headers)
    )
    sign(root, credentials, now=datetime.datetime.now(datetime.UTC))
    return serialize(root)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    return {name: make_keypair(tmp_path / "keys", name) for name in ("sp", "hp")}


def test_a_signed_undeploy_for_one_host_is_refused_by_another(
    make_cluster: MakeCluster, keys: dict[str, tuple[Path, Path]]
) -> None:
    sp_key, sp_cert = keys["sp"]
    hp_key, hp_cert = keys["hp"]
    signed_sp = ["--key", str(sp_key), "--cert", str(sp_cert), "--trust", str(hp_cert)]
    signed_hp = ["--key", str(hp_key), "--cert", str(hp_cert), "--trust", str(sp_cert)]
    cluster = make_cluster(sp_args=signed_sp, hps=[signed_hp, signed_hp])
    a, b = (hp.url for hp in cluster.hps)
    cluster.client.publish(samples_dir() / "echo")
    deployment = cluster.client.call("Deploy", name="Echo", host=b)
    assert deployment.host == b
    undeploy = (
        f'<h:Undeploy xmlns:h="{ns.DYN_HP}"><h:deploymentId>{deployment.id}</h:deploymentId>'
        "</h:Undeploy>"
    )
    sp = Credentials.load(sp_key, sp_cert)
    reply = post(
        b + HP_PORT,
        signed_for(a, sp, "Undeploy", undeploy),
        "1.2",
        soap_action=f"{ns.DYN_HP}/Undeploy",
    )
    assert reply.fault_codes() == ["{%s}Sender" % ns.SOAP12_ENV, W + "DestinationUnreachable"]
    assert reply.text(".//wsa:ProblemIRI") == a + HP_PORT
    # Nothing was done: B still runs the deployment, and the SP still relays to it.
    assert [d.id for d in cluster.client.call("ListDeployments")] == [deployment.id]
    status = post(cluster.service_url("Echo"), envelope(echo_body("still here")), "1.1")
    assert status.status == 200 and status.headers["x-dynasoar-host"] == b
    # Unsigned, it is a WS-Security fault (whose Action is .../soap/fault: SOAP Binding §6).
    unsigned = post(
        b + HP_PORT,
        envelope(undeploy, wsa_headers(to=b + HP_PORT, action=f"{ns.DYN_HP}/Undeploy")[0], "1.2"),
        "1.2",
        soap_action=f"{ns.DYN_HP}/Undeploy",
    )
    assert "{%s}InvalidSecurity" % WSSE in unsigned.fault_codes()
    assert header_text(unsigned, "Action") == ns.WSA_SOAP_FAULT_ACTION
    # The same message, signed for B, is B's to act on.
    mine = signed_for(b, sp, "Undeploy", undeploy)
    done = post(b + HP_PORT, mine, "1.2", soap_action=f"{ns.DYN_HP}/Undeploy")
    assert done.status == 200 and b">true<" in done.body


@VERSIONS
def test_the_sp_takes_only_what_names_its_own_address(cluster: Cluster, version: str) -> None:
    port = cluster.sp.url + SP_PORT
    other_port = cluster.hps[0].url + SP_PORT  # the right path on another actor
    headers, _ = wsa_headers(to=other_port, action=SP_LIST_ACTION)
    reply = post(port, envelope(SP_LIST, headers, version), version, soap_action=SP_LIST_ACTION)
    assert W + "DestinationUnreachable" in reply.fault_codes()
    # Its loopback address by name is its own too.
    by_name = port.replace("127.0.0.1", "localhost")
    headers, message_id = wsa_headers(to=by_name, action=SP_LIST_ACTION)
    ok = post(port, envelope(SP_LIST, headers, version), version, soap_action=SP_LIST_ACTION)
    assert ok.status == 200 and header_text(ok, "RelatesTo") == message_id
    cluster.client.publish(samples_dir() / "echo")
    service = cluster.service_url("Echo")
    headers, _ = wsa_headers(to=service.replace(cluster.sp.url, "https://127.0.0.1:1"))
    wrong = post(service, envelope(echo_body(), headers, version), version, ECHO_ACTION)
    assert W + "DestinationUnreachable" in wrong.fault_codes()
    assert not cluster.client.call("ListDeployments")


@VERSIONS
def test_public_urls_are_the_actors_own(make_cluster: MakeCluster, version: str) -> None:
    """Behind a proxy, messages name the proxy's URL: ``--public-url`` makes it the SP's."""
    public = "https://soap.example.org/gateway"
    cluster = make_cluster(sp_args=["--public-url", public], hps=[[]])
    cluster.client.publish(samples_dir() / "echo")
    port = cluster.sp.url + SP_PORT
    headers, message_id = wsa_headers(to=public + SP_PORT, action=SP_LIST_ACTION)
    ok = post(port, envelope(SP_LIST, headers, version), version, soap_action=SP_LIST_ACTION)
    assert ok.status == 200 and header_text(ok, "RelatesTo") == message_id
    headers, _ = wsa_headers(to=public + "/services/Echo")
    echoed = post(
        cluster.service_url("Echo"), envelope(echo_body("via"), headers, version), version
    )
    assert echoed.status == 200 and b"via" in echoed.body
    for elsewhere in ("https://soap.example.org/other", "http://soap.example.org/gateway"):
        headers, _ = wsa_headers(to=elsewhere + SP_PORT, action=SP_LIST_ACTION)
        refused = post(port, envelope(SP_LIST, headers, version), version, SP_LIST_ACTION)
        assert W + "DestinationUnreachable" in refused.fault_codes(), elsewhere


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_hp_registers_and_answers_to_its_public_url(cluster: Cluster) -> None:
    port = free_port()
    public = f"http://localhost:{port}"  # how the SP is to reach it
    hp = cluster.add_hp(
        register=False, args=["--port", str(port), "--public-url", public, "--sp", cluster.sp.url]
    )
    wait_for(lambda: public in cluster.hosts_up(), what="the HP to register its public URL")
    assert hp.url not in cluster.hosts_up()
    headers, message_id = wsa_headers(to=public + HP_PORT, action=f"{ns.DYN_HP}/Status")
    body = f'<h:Status xmlns:h="{ns.DYN_HP}"/>'
    ok = post(hp.url + HP_PORT, envelope(body, headers, "1.2"), "1.2")
    assert ok.status == 200 and header_text(ok, "RelatesTo") == message_id
    assert ok.xml.findtext(f".//{{{ns.DYN}}}address") == public  # as it tells the SP
