"""The management ports' processing is one named chain, built in one place: its phases in
order, and a chain built out of order is refused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dynasoar.addresses import OwnAddresses
from dynasoar.host.port import host_port
from dynasoar.paths import HOST_PORT, contracts_dir
from dynasoar.service.endpoint import EndpointConfig, ManagementEndpoint
from dynasoar.service.port_chain import PHASES, PortChain
from dynasoar.soap.security import Policy


def test_the_phases_of_a_management_port(tmp_path: Path) -> None:
    with ThreadPoolExecutor(1) as executor:
        endpoint = ManagementEndpoint(
            host_port(),
            EndpointConfig(HOST_PORT, contracts_dir() / "HostProvider.wsdl", tmp_path),
            executor,
            dict,
        )
        phases = tuple(p.phase for p in endpoint._chain.phases)
    assert phases == PHASES
    assert PHASES.index("addressing") < PHASES.index("invoke") < PHASES.index("undo-if-gone")
    assert PHASES[-2:] == ("reply", "sign")


def test_a_chain_out_of_order_is_refused(tmp_path: Path) -> None:
    with ThreadPoolExecutor(1) as executor:
        endpoint = ManagementEndpoint(
            host_port(),
            EndpointConfig(
                HOST_PORT, contracts_dir() / "HostProvider.wsdl", tmp_path, own=OwnAddresses()
            ),
            executor,
            dict,
        )
        phases = list(endpoint._chain.phases)
    phases[0], phases[1] = phases[1], phases[0]
    with pytest.raises(ValueError, match="out of order"):
        PortChain(phases, HOST_PORT, Policy(), 400)
