"""Benchmark (s): the fixed cost of a signed call, in this one process. A Status request as the
SP's HostProvider client sends it (WS-Addressing headers, a small Body), RSA-2048 keys from
``dynasoar keys``: signing and serializing it, our way and xmlsec's way (``sign(engine=...)``,
the same bytes), alternating in one run; then parsing and verifying it as a receiver does
(trust store, xmlsec's verify, timestamp, replay cache). Microseconds a message, the best round
of each (the machine is shared: the best round is the one least disturbed)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from lxml import etree

from dynasoar import ns
from dynasoar.keys import make_keypair
from dynasoar.soap import addressing
from dynasoar.soap.envelope import SoapVersion, build_envelope, parse_envelope, serialize
from dynasoar.soap.security import Credentials, ReplayCache, TrustStore, sign, verify

Engine = Literal["dynasoar", "xmlsec"]
ENGINES: tuple[Engine, ...] = ("dynasoar", "xmlsec")


def status_request(url: str = "http://127.0.0.1:9/dynasoar/HostProvider") -> etree._Element:
    """An unsigned Status request, as soap/client.py builds it."""
    headers = addressing.AddressingHeaders(
        to=url,
        action=f"{ns.DYN_HP}/Status",
        message_id=addressing.new_message_id(),
        present=True,
    )
    payload = etree.Element(f"{{{ns.DYN_HP}}}Status", nsmap={"hp": ns.DYN_HP})
    return build_envelope(SoapVersion.SOAP11, [payload], addressing.write_headers(headers))


def _sign_all(
    roots: list[etree._Element], credentials: Credentials, engine: Engine
) -> tuple[list[bytes], float]:
    """The messages signed and serialized, and the microseconds each took."""
    wire = []
    start = time.perf_counter()
    for root in roots:
        sign(root, credentials, engine=engine)
        wire.append(serialize(root))
    return wire, (time.perf_counter() - start) / len(roots) * 1e6


def _verify_all(wire: list[bytes], trust: TrustStore) -> float:
    """Microseconds each message took to parse and verify (raises if one does not)."""
    replay = ReplayCache()
    start = time.perf_counter()
    for data in wire:
        verify(parse_envelope(data).root, trust, replay=replay)
    return (time.perf_counter() - start) / len(wire) * 1e6


def measure(work: Path, messages: int = 2000, rounds: int = 3) -> tuple[dict[Engine, float], float]:
    """(sign + serialize us/message by engine, parse + verify us/message), best rounds."""
    key, cert = make_keypair(work, "bench-signer", overwrite=True)
    credentials = Credentials.load(key, cert)
    trust = TrustStore.from_paths([cert])
    signing: dict[Engine, list[float]] = {engine: [] for engine in ENGINES}
    verifying: list[float] = []
    for _ in range(rounds):
        for engine in ENGINES:
            roots = [status_request() for _ in range(messages)]  # built outside the clock
            wire, cost = _sign_all(roots, credentials, engine)
            signing[engine].append(cost)
            if engine == "dynasoar":
                verifying.append(_verify_all(wire, trust))
    return {engine: min(times) for engine, times in signing.items()}, min(verifying)


def signature_cost(work: Path, messages: int = 2000, rounds: int = 3) -> None:
    print(
        f"\n(s) signatures: a signed Status request, {messages} messages x {rounds} rounds "
        "in one process (best round)",
        flush=True,
    )
    work.mkdir(parents=True, exist_ok=True)
    signing, verifying = measure(work, messages, rounds)
    ours, theirs = signing["dynasoar"], signing["xmlsec"]
    print(f"    sign + serialize (ours)          {ours:7.0f} us/message")
    print(f"    sign + serialize (xmlsec's)      {theirs:7.0f} us/message")
    print(f"    parse + verify                   {verifying:7.0f} us/message")
    print(f"    xmlsec's signing / ours          {theirs / ours:7.2f}")

