"""Trust between the actors, with real processes: SP → HP control messages signed and verified
both ways, forged / unsigned / replayed / expired Deploys refused (nothing deployed), an HP
the SP does not trust never used, and the whole story over HTTPS."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from dynasoar import ns
from dynasoar.consumer.call import call
from dynasoar.errors import DeploymentFailed, RemoteFault
from dynasoar.http import ConnectionPool
from dynasoar.keys import make_keypair
from dynasoar.paths import samples_dir
from dynasoar.soap import addressing
from dynasoar.soap.client import SoapClient
from dynasoar.soap.envelope import SoapVersion, build_envelope, serialize
from dynasoar.soap.security import Credentials, Policy, sign
from dynasoar.soap.wsse import WSU

from .conftest import Cluster, wait_for
from .wire import echo_body, envelope, post

MakeCluster = Callable[..., Cluster]
WSSE = "{%s}" % "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    return {name: make_keypair(tmp_path / "keys", name) for name in ("sp", "hp", "rogue")}


def signed_args(keys: dict[str, tuple[Path, Path]], me: str, peer: str) -> list[str]:
    key, cert = keys[me]
    return ["--key", str(key), "--cert", str(cert), "--trust", str(keys[peer][1])]


@pytest.fixture
def signed(make_cluster: MakeCluster, keys: dict[str, tuple[Path, Path]]) -> Cluster:
    return make_cluster(sp_args=signed_args(keys, "sp", "hp"), hps=[signed_args(keys, "hp", "sp")])


def test_signed_control_messages_deploy_and_relay(signed: Cluster) -> None:
    signed.client.publish(samples_dir() / "echo")
    reply = call(signed.service_url("Echo") + "?wsdl", "Echo", ["text=signed all the way"])
    assert (reply.value, reply.headers["x-dynasoar-cold"]) == ("signed all the way", "1")


def status_as(
    hp: str,
    credentials: Credentials | None,
    now: datetime.datetime | None = None,
    message_id: str | None = None,
) -> bytes:
    """A Status request to ``hp``, signed by ``credentials`` (at ``now``) or unsigned."""
    port = hp + "/dynasoar/HostProvider"
    headers = addressing.AddressingHeaders(
        to=port,
        action=f"{ns.DYN_HP}/Status",
        message_id=message_id or addressing.new_message_id(),
        present=True,
    )
    root = build_envelope(
        SoapVersion.SOAP12,
        [etree.Element(f"{{{ns.DYN_HP}}}Status")],
        addressing.write_headers(headers),
    )
    if credentials is not None:
        sign(root, credentials, now=now)
    return serialize(root)


def test_the_hp_refuses_what_it_cannot_trust(
    signed: Cluster, keys: dict[str, tuple[Path, Path]]
) -> None:
    hp = signed.hps[0].url
    port = hp + "/dynasoar/HostProvider"
    sp = Credentials.load(*keys["sp"])
    rogue = Credentials.load(*keys["rogue"])
    cases = {
        "unsigned": (status_as(hp, None), WSSE + "InvalidSecurity"),
        "untrusted signer": (status_as(hp, rogue), WSSE + "FailedAuthentication"),
        "expired": (
            status_as(hp, sp, datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2)),
            WSSE + "MessageExpired",
        ),
    }
    for case, (body, code) in cases.items():
        reply = post(port, body, "1.2", soap_action=f"{ns.DYN_HP}/Status")
        assert code in reply.fault_codes(), (case, reply.body[:600])
    once = status_as(hp, sp)
    assert post(port, once, "1.2", soap_action=f"{ns.DYN_HP}/Status").status == 200
    replayed = post(port, once, "1.2", soap_action=f"{ns.DYN_HP}/Status")
    assert WSSE + "FailedAuthentication" in replayed.fault_codes()
    assert b"received before" in replayed.body


def test_a_forged_deploy_deploys_nothing(
    signed: Cluster, keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    from dynasoar.consumer.host_client import HostClient, PackageShipment
    from dynasoar.consumer.publish import prepare
    from dynasoar.images import sha256_file

    upload = prepare(samples_dir() / "echo", tmp_path / "scratch")
    shipment = PackageShipment(
        "Echo", "1.0", "code", True, upload.archive, sha256_file(upload.archive)
    )
    hp = signed.hps[0].url

    async def as_(who: str, deploy: bool) -> int:
        pool = ConnectionPool()
        try:
            client = HostClient(
                SoapClient(
                    pool, SoapVersion.SOAP12, Policy(credentials=Credentials.load(*keys[who]))
                )
            )
            if deploy:
                await client.deploy(hp, shipment, timeout=30)
            return (await client.status(hp, timeout=10)).deployments
        finally:
            await pool.close()

    with pytest.raises(DeploymentFailed, match="CN=rogue"):
        asyncio.run(as_("rogue", deploy=True))
    assert asyncio.run(as_("sp", deploy=False)) == 0  # asked by the SP it trusts: nothing
    assert signed.client.call("ListDeployments") == []


def test_an_untrusted_host_is_never_used(
    make_cluster: MakeCluster, keys: dict[str, tuple[Path, Path]]
) -> None:
    cluster = make_cluster(sp_args=signed_args(keys, "sp", "hp"), hps=[])
    cluster.add_hp(args=signed_args(keys, "hp", "sp"))
    rogue = cluster.add_hp(register=False, args=signed_args(keys, "rogue", "sp"))
    with pytest.raises(RemoteFault):
        cluster.client.call("RegisterHost", address=rogue.url)
    cluster.client.publish(samples_dir() / "echo")
    for i in range(3):
        reply = call(cluster.service_url("Echo") + "?wsdl", "Echo", [f"text={i}"])
        assert reply.headers["x-dynasoar-host"] == cluster.hps[0].url
    assert rogue.url not in cluster.hosts_up()


def test_the_story_over_https(
    make_cluster: MakeCluster,
    keys: dict[str, tuple[Path, Path]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    key, cert = keys["sp"]
    tls = ["--tls-cert", str(cert), "--tls-key", str(key), "--ca", str(cert)]
    monkeypatch.setenv("DYNASOAR_CA", str(cert))  # this test's own clients
    cluster = make_cluster(sp_args=tls, hps=[tls])
    assert cluster.sp.url.startswith("https://") and cluster.hps[0].url.startswith("https://")
    cluster.client.publish(samples_dir() / "echo")
    reply = call(cluster.service_url("Echo") + "?wsdl", "Echo", ["text=private"])
    assert reply.value == "private"
    wait_for(lambda: cluster.hps[0].url in cluster.hosts_up(), what="the https HP")


def test_a_service_that_requires_signed_messages(
    make_cluster: MakeCluster, keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    from .conftest import make_package

    alice = make_keypair(tmp_path / "consumers", "alice")
    cluster = make_cluster(sp_args=["--consumer-trust", str(alice[1])])
    package = make_package(tmp_path, "echo", "Private")
    manifest = package / "dynasoar.toml"
    manifest.write_text(manifest.read_text() + "\n[security]\nrequire_signed_messages = true\n")
    cluster.client.publish(package)
    wsdl = cluster.service_url("Private") + "?wsdl"

    with pytest.raises(RemoteFault) as unsigned:
        call(wsdl, "Echo", ["text=who am I"])
    assert "InvalidSecurity" in str(unsigned.value)
    with pytest.raises(RemoteFault) as stranger:
        call(wsdl, "Echo", ["text=let me in"], credentials=Credentials.load(*keys["rogue"]))
    assert "FailedAuthentication" in str(stranger.value) and "CN=rogue" in str(stranger.value)
    assert cluster.client.call("ListDeployments") == []  # nothing deployed for either

    for i in range(3):
        reply = call(wsdl, "Echo", [f"text=hello {i}"], credentials=Credentials.load(*alice))
        assert reply.value == f"hello {i}"
    (deployment,) = cluster.client.call("ListDeployments")
    assert deployment.deployedFor == "CN=alice"
    assert [(c.subject, c.messages) for c in deployment.consumer] == [("CN=alice", 3)]
    # Billed to the signer (not to an address or a claim).
    assert {(r.consumer, r.messages) for r in cluster.client.call("GetUsage")} == {
        ("CN=alice", 3)
    }

    # A header block whose namespace URI holds "}" (which the head parser lets through): a
    # message that came in one read is checked as its head was parsed (a WS-Security fault
    # naming the wrapped reference); one that came in several is parsed whole first, and the
    # parser refuses the URI (MalformedMessage). Which one depends on how TCP cut it; never an
    # internal error.
    wrapped = (
        f'<wsse:Security xmlns:wsse="{WSSE[1:-1]}" xmlns:wsu="{WSU}">'
        '<wsu:Timestamp wsu:Id="ts"/><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">'
        "<ds:SignedInfo>"
        '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
        '<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>'
        '<ds:Reference URI="#inner"><ds:Transforms>'
        '<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>'
        '<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
        "<ds:DigestValue>AA==</ds:DigestValue></ds:Reference></ds:SignedInfo>"
        "<ds:SignatureValue>AA==</ds:SignatureValue></ds:Signature></wsse:Security>"
        f'<x:h xmlns:x="urn:a}}b"><x:i xmlns:wsu="{WSU}" wsu:Id="inner"/></x:h>'
    )
    reply = post(cluster.service_url("Private"), envelope(echo_body(), wrapped))
    assert reply.status == 500, reply.body
    assert (b"InvalidSecurity" in reply.body and b"x:i inside x:h" in reply.body) or (
        b"MalformedMessage" in reply.body and b"'urn:a}b' is not a valid URI" in reply.body
    ), reply.body
    assert b"internal error" not in reply.body.lower()
