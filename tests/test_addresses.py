"""The addresses an actor answers to: as it listens (loopback and wildcard binds answer to
their names too), and the public URLs configured; scheme, host, port and path all count."""

from __future__ import annotations

import socket

import pytest

from dynasoar.addresses import Base, OwnAddresses

PATH = "/dynasoar/HostProvider"


def own(listening: str, *public: str) -> OwnAddresses:
    addresses = OwnAddresses(public)
    addresses.listening(listening)
    return addresses


@pytest.mark.parametrize(
    ("to", "named"),
    [
        ("http://127.0.0.1:8001/dynasoar/HostProvider", True),
        ("http://127.0.0.1:8001/dynasoar/HostProvider/", True),
        ("http://127.0.0.1:8001/dynasoar/HostProvider?x=1", True),
        ("HTTP://LOCALHOST:8001/dynasoar/HostProvider", True),
        ("http://[::1]:8001/dynasoar/HostProvider", True),
        ("http://127.0.0.1:8002/dynasoar/HostProvider", False),
        ("https://127.0.0.1:8001/dynasoar/HostProvider", False),
        ("http://10.0.0.7:8001/dynasoar/HostProvider", False),
        ("http://127.0.0.1:8001/dynasoar/ServiceProvider", False),
        ("http://127.0.0.1/dynasoar/HostProvider", False),
        ("urn:not-a-url", False),
        ("http://127.0.0.1:x/dynasoar/HostProvider", False),
    ],
)
def test_as_it_listens_on_loopback(to: str, named: bool) -> None:
    assert own("http://127.0.0.1:8001").names(to, PATH) is named


def test_a_specific_address_answers_to_itself_only() -> None:
    addresses = own("http://10.1.2.3:8001")
    assert addresses.names("http://10.1.2.3:8001" + PATH, PATH)
    assert not addresses.names("http://localhost:8001" + PATH, PATH)


def test_a_wildcard_bind_answers_to_the_machines_names() -> None:
    addresses = own("http://0.0.0.0:8001")
    assert addresses.names("http://127.0.0.1:8001" + PATH, PATH)
    assert addresses.names(f"http://{socket.gethostname()}:8001" + PATH, PATH)
    assert not addresses.names("http://elsewhere.invalid:8001" + PATH, PATH)


def test_public_urls_with_a_path_prefix_and_default_ports() -> None:
    addresses = own(
        "http://127.0.0.1:8001", "https://hp.example.org/grid", "http://hp2.example.org"
    )
    assert addresses.names("https://hp.example.org/grid" + PATH, PATH)
    assert addresses.names("https://hp.example.org:443/grid" + PATH, PATH)
    assert addresses.names("http://hp2.example.org:80" + PATH, PATH)
    assert not addresses.names("https://hp.example.org" + PATH, PATH)
    assert not addresses.names("http://hp.example.org/grid" + PATH, PATH)
    assert "https://hp.example.org:443/grid" + PATH in addresses.describe(PATH)


@pytest.mark.parametrize(
    "url", ["ftp://x/", "http://", "http://u:p@x/", "http://x/?q", "http://x:port/"]
)
def test_a_base_url_must_be_plain_http(url: str) -> None:
    with pytest.raises(ValueError):
        Base.parse(url)
