"""The WSDLs the running endpoints serve: exactly the files in wsdl/ with the real address
filled in, loadable by zeep with their schemas, and callable on both bindings."""

from __future__ import annotations

from pathlib import Path

import pytest
import zeep
from lxml import etree

from dynasoar import ns
from dynasoar.paths import contracts_dir

from .conftest import Cluster
from .wire import get


def _bind(client: zeep.Client, soap12: bool):  # type: ignore[no-untyped-def]
    for service in client.wsdl.services.values():
        for port in service.ports.values():
            if (port.binding.__class__.__name__ == "Soap12Binding") == soap12:
                return client.bind(service.name, port.name)
    raise AssertionError("no such binding")


def _without_addresses(xml: bytes) -> bytes:
    root = etree.fromstring(xml)
    for tag in ("{%s}address" % ns.WSDL_SOAP11, "{%s}address" % ns.WSDL_SOAP12):
        for el in root.iter(tag):
            el.set("location", "-")
    return etree.tostring(root, method="c14n")


@pytest.mark.parametrize("soap12", [False, True], ids=["soap11", "soap12"])
def test_sp_port_through_its_served_wsdl(cluster: Cluster, soap12: bool) -> None:
    url = cluster.sp.url + "/dynasoar/ServiceProvider"
    service = _bind(zeep.Client(url + "?wsdl"), soap12)
    hosts = service.ListHosts()
    assert sorted(h.address for h in hosts) == sorted(hp.url for hp in cluster.hps)
    assert service.ListServices() == []


@pytest.mark.parametrize("soap12", [False, True], ids=["soap11", "soap12"])
def test_hp_port_through_its_served_wsdl(cluster: Cluster, soap12: bool) -> None:
    hp = cluster.hps[0]
    service = _bind(zeep.Client(hp.url + "/dynasoar/HostProvider?wsdl"), soap12)
    status = service.Status()
    assert status.capacity == 8
    assert status.deployments == 0
    assert status.backend == "process"
    assert status.address == hp.url
    assert service.List() == []


@pytest.mark.parametrize(
    ("actor", "path", "file"),
    [
        ("sp", "/dynasoar/ServiceProvider?wsdl", "ServiceProvider.wsdl"),
        ("hp", "/dynasoar/HostProvider?wsdl", "HostProvider.wsdl"),
        ("sp", "/dynasoar/dynasoar.xsd", "dynasoar.xsd"),
        ("hp", "/dynasoar/ws-addr.xsd", "ws-addr.xsd"),
    ],
)
def test_served_documents_are_the_files_in_wsdl(
    cluster: Cluster, actor: str, path: str, file: str
) -> None:
    base = cluster.sp.url if actor == "sp" else cluster.hps[0].url
    reply = get(base + path)
    assert reply.status == 200
    served = reply.body
    original = (contracts_dir() / file).read_bytes()
    if file.endswith(".wsdl"):
        assert _without_addresses(served) == _without_addresses(original)
        locations = {
            el.get("location")
            for el in etree.fromstring(served).iter(
                "{%s}address" % ns.WSDL_SOAP11, "{%s}address" % ns.WSDL_SOAP12
            )
        }
        assert locations == {base + path.partition("?")[0]}
    else:
        assert served == original


def test_every_contract_file_is_served(cluster: Cluster) -> None:
    for file in Path(contracts_dir()).glob("*.xsd"):
        assert get(cluster.sp.url + "/dynasoar/" + file.name).status == 200
