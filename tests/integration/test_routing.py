"""Consumer → SP → HP: cold and warm calls, the burst, the relay's bytes and headers."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest
import zeep

from dynasoar import ns
from dynasoar.consumer.call import ReplyHeaders, call
from dynasoar.consumer.zeep_client import new_client

from .conftest import Cluster
from .wire import ECHO_ACTION, echo_body, envelope, post, wsa_headers


@pytest.mark.parametrize("soap12", [False, True], ids=["soap11", "soap12"])
def test_cold_call_deploys_then_warm_call_relays(cluster: Cluster, echo: str, soap12: bool) -> None:
    first = call(echo + "?wsdl", "Echo", ["text=héllo, Dynasoar"], soap12=soap12)
    assert first.value == "héllo, Dynasoar"
    assert first.headers["x-dynasoar-cold"] == "1"
    host = first.headers["x-dynasoar-host"]
    assert host in {hp.url for hp in cluster.hps}

    second = call(echo + "?wsdl", "Echo", ["text=again"], soap12=soap12)
    assert second.value == "again"
    assert second.headers["x-dynasoar-cold"] == "0"
    assert second.headers["x-dynasoar-host"] == host
    assert second.headers["x-dynasoar-deployment"] == first.headers["x-dynasoar-deployment"]

    deployments = cluster.client.call("ListDeployments") or []
    assert [(d.service, d.host) for d in deployments] == [("Echo", host)]


def test_compute_reaches_the_service(cluster: Cluster, echo: str) -> None:
    result = call(echo + "?wsdl", "Compute", ["millis=20"])
    assert isinstance(result.value, int) and result.value > 0


def test_burst_of_first_calls_makes_exactly_one_deployment(cluster: Cluster, echo: str) -> None:
    """50 zeep consumers send their first message at once: one deployment, 50 answers."""
    clients = []
    for _ in range(50):
        headers = ReplyHeaders()
        clients.append((new_client(echo + "?wsdl", plugins=[headers]), headers))
    start = threading.Barrier(50)

    def one(i: int) -> tuple[str, str, str]:
        client, headers = clients[i]
        start.wait(timeout=30)
        value = client.service.Echo(text=f"call {i}")
        return value, headers.headers["x-dynasoar-cold"], headers.headers["x-dynasoar-deployment"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(50)))

    assert [r[0] for r in results] == [f"call {i}" for i in range(50)]
    assert sorted(r[1] for r in results) == ["0"] * 49 + ["1"]
    assert len({r[2] for r in results}) == 1
    assert len(cluster.client.call("ListDeployments") or []) == 1
    hosted = sum(len(_hp_list(hp.url)) for hp in cluster.hps)
    assert hosted == 1


def test_relay_keeps_the_envelope_and_answers_with_relates_to(cluster: Cluster, echo: str) -> None:
    headers, message_id = wsa_headers(to=echo)
    reply = post(echo, envelope(echo_body("wire"), headers), soap_action=ECHO_ACTION)
    assert reply.status == 200
    assert reply.text(".//wsa:RelatesTo") == message_id
    assert reply.text(".//wsa:Action") == "urn:dynasoar:samples:echo/EchoResponse"
    assert reply.headers["content-type"].startswith("text/xml")
    for name in ("x-dynasoar-host", "x-dynasoar-deployment", "x-dynasoar-cold"):
        assert name in reply.headers


def test_plain_soap_without_addressing_is_answered_without_it(cluster: Cluster, echo: str) -> None:
    reply = post(echo, envelope(echo_body("plain")), soap_action=ECHO_ACTION)
    assert reply.status == 200
    assert reply.text(".//echo:text") == "plain"
    assert reply.find(".//wsa:RelatesTo") is None
    assert reply.find(".//s11:Header") is None or len(reply.find(".//s11:Header")) == 0


def test_member_submission_addressing_is_answered_in_its_namespace(
    cluster: Cluster, echo: str
) -> None:
    headers, message_id = wsa_headers(to=echo)
    reply = post(
        echo, envelope(echo_body("2004"), headers, wsa=ns.WSA_2004), soap_action=ECHO_ACTION
    )
    assert reply.status == 200
    assert reply.text(".//wsa04:RelatesTo") == message_id
    assert reply.find(".//wsa:RelatesTo") is None


def test_service_wsdl_is_rewritten_to_the_sp(cluster: Cluster, echo: str) -> None:
    client = zeep.Client(echo + "?wsdl")
    addresses = {
        port.binding_options["address"]
        for service in client.wsdl.services.values()
        for port in service.ports.values()
    }
    assert addresses == {echo}


def _hp_list(url: str) -> list[object]:
    client = zeep.Client(url + "/dynasoar/HostProvider?wsdl")
    return list(client.service.List() or [])
