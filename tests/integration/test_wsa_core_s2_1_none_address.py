"""WS-Addressing 1.0 Core §2.1 and §3.4: a reply or fault whose endpoint's address is
``http://www.w3.org/2005/08/addressing/none`` is discarded. On the wire, SOAP 1.1 and 1.2: the
HTTP response is an empty 202, and the message is still processed. Through the SP to a
stateful service (Counter: what was processed shows in its count) and at both management ports
(a Deploy with ReplyTo none still deploys). After the W3C test suite's scenarios with a ReplyTo
or FaultTo of none (and its table of ReplyTo / FaultTo combinations: none / anonymous)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dynasoar import ns

from .conftest import Cluster, make_package, wait_for
from .wire import ECHO_NS, echo_body, envelope, post, wsa_headers
from .wsa import HP_PORT, HP_STATUS, HP_STATUS_ACTION, SP_PORT, fault_to, reply_to

VERSIONS = pytest.mark.parametrize("version", ["1.1", "1.2"])
COUNTER_NS = "urn:dynasoar:samples:counter"
INCREMENT = COUNTER_NS + "/Increment"
INCREMENT_BODY = f'<c:Increment xmlns:c="{COUNTER_NS}"/>'
NONE = ns.WSA_NONE


def increment(cluster: Cluster, version: str, extra: str = "") -> tuple[int, bytes]:
    url = cluster.service_url("Counter")
    headers, _ = wsa_headers(to=url, action=INCREMENT, extra=extra)
    reply = post(url, envelope(INCREMENT_BODY, headers, version), version, soap_action=INCREMENT)
    return reply.status, reply.body


def count(cluster: Cluster, version: str) -> int:
    """Increment once more, answered: the count so far plus one."""
    status, body = increment(cluster, version)
    assert status == 200, body
    value = body.split(b"value>")[1].split(b"<")[0]
    return int(value)


def store_rows(cluster: Cluster) -> int:
    """Rows in the SP's reply store (a message accepted with 202 until it is done)."""
    with sqlite3.connect(cluster.work / "sp" / "registry.sqlite") as db:
        return int(db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0])


@pytest.fixture
def counter(cluster: Cluster, tmp_path: Path) -> Cluster:
    cluster.client.publish(make_package(tmp_path, "counter"))
    return cluster


@VERSIONS
def test_reply_to_none_with_an_anonymous_fault_to(counter: Cluster, version: str) -> None:
    """A fault would come back on the HTTP response, so it waits: processed, then 202."""
    extra = reply_to(NONE) + fault_to(ns.WSA_ANONYMOUS)
    assert increment(counter, version, extra) == (202, b"")
    assert count(counter, version) == 2


@VERSIONS
def test_reply_to_none_is_accepted_at_once_and_still_processed(
    counter: Cluster, version: str
) -> None:
    """No outcome goes back on the HTTP response: 202 at once; processing goes on."""
    assert increment(counter, version, reply_to(NONE)) == (202, b"")
    wait_for(lambda: store_rows(counter) == 0, what="the accepted message to be processed")
    assert count(counter, version) == 2


@VERSIONS
def test_fault_to_none_discards_a_fault(counter: Cluster, version: str) -> None:
    """A fault the SP raises (an action the Counter does not have: ActionNotSupported), to a
    FaultTo of none: discarded, an empty 202."""
    url = counter.service_url("Counter")
    action = COUNTER_NS + "/Nope"
    headers, _ = wsa_headers(to=url, action=action, extra=fault_to(NONE))
    reply = post(url, envelope(INCREMENT_BODY, headers, version), version, soap_action=action)
    assert (reply.status, reply.body) == (202, b"")
    # A normal reply still comes back: only the fault endpoint is none.
    headers, message_id = wsa_headers(to=url, action=INCREMENT, extra=fault_to(NONE))
    ok = post(url, envelope(INCREMENT_BODY, headers, version), version, soap_action=INCREMENT)
    assert ok.status == 200 and message_id.encode() in ok.body


@VERSIONS
def test_fault_to_none_discards_a_relayed_fault(cluster: Cluster, version: str) -> None:
    cluster.client.publish(make_package(cluster.work, "echo"))
    url = cluster.service_url("Echo")
    action = ECHO_NS + "/Compute"
    body = f'<e:Compute xmlns:e="{ECHO_NS}"><e:millis>-1</e:millis></e:Compute>'
    headers, _ = wsa_headers(to=url, action=action, extra=fault_to(NONE))
    reply = post(url, envelope(body, headers, version), version, soap_action=action)
    assert (reply.status, reply.body) == (202, b"")
    assert cluster.client.call("ListDeployments"), "it went to the service (and was refused)"
    plain, _ = wsa_headers(to=url, extra=fault_to(NONE))
    echoed = post(url, envelope(echo_body("still"), plain, version), version)
    assert echoed.status == 200 and b"still" in echoed.body


@VERSIONS
def test_a_deploy_with_reply_to_none_still_deploys(cluster: Cluster, version: str) -> None:
    cluster.client.publish(make_package(cluster.work, "echo"))
    port = cluster.sp.url + SP_PORT
    action = f"{ns.DYN_SP}/Deploy"
    body = f'<sp:Deploy xmlns:sp="{ns.DYN_SP}"><sp:name>Echo</sp:name></sp:Deploy>'
    headers, _ = wsa_headers(to=port, action=action, extra=reply_to(NONE))
    reply = post(port, envelope(body, headers, version), version, soap_action=action)
    assert (reply.status, reply.body) == (202, b"")
    assert [d.service for d in cluster.client.call("ListDeployments")] == ["Echo"]


@VERSIONS
def test_the_hp_port_honours_none_too(cluster: Cluster, version: str) -> None:
    port = cluster.hps[0].url + HP_PORT
    headers, _ = wsa_headers(to=port, action=HP_STATUS_ACTION, extra=reply_to(NONE))
    reply = post(port, envelope(HP_STATUS, headers, version), version, soap_action=HP_STATUS_ACTION)
    assert (reply.status, reply.body) == (202, b"")
    # and a fault to a FaultTo of none
    headers, _ = wsa_headers(to=port, action=HP_STATUS_ACTION + "Nope", extra=fault_to(NONE))
    fault = post(port, envelope(HP_STATUS, headers, version), version, soap_action=None)
    assert (fault.status, fault.body) == (202, b"")
