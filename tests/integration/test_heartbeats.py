"""Heartbeats that carry a host's figures, against a real SP: the SP takes them without asking
the host anything (no Status call per beat), answers with the interval it wants, and believes
figures only from a host it trusts when it trusts any (an unsigned beat is checked with a live
Status call instead); ListHosts answers from what was heard, asking no host; a host nothing is
heard from is checked by the control loop now and then."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from dynasoar import beats
from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.errors import DynasoarError
from dynasoar.http import ConnectionPool
from dynasoar.keys import make_keypair
from dynasoar.procs import start_actor
from dynasoar.snapshots import SnapshotStats
from dynasoar.soap.client import Reply, SoapClient
from dynasoar.soap.security import Credentials, Policy

from .conftest import wait_for

SP_PORT = "/dynasoar/ServiceProvider"


def beat(
    sp: str,
    address: str,
    capacity: int,
    credentials: Credentials | None = None,
    snapshots: SnapshotStats | None = None,
) -> Reply:
    async def send() -> Reply:
        pool = ConnectionPool()
        try:
            client = SoapClient(pool, security=Policy(credentials=credentials))
            request = beats.register_host(
                address,
                2.0,
                backend="process",
                capacity=capacity,
                deployments=0,
                load=0.0,
                snapshots=snapshots,
            )
            return await client.call(sp + SP_PORT, beats.ACTION, request, timeout=10.0)
        finally:
            await pool.close()

    return asyncio.run(send())


def silent_address() -> str:
    """A host address where nothing listens: any Status call to it fails."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def capacity_of(reply: Reply) -> int:
    return int(reply.body.findtext(".//{urn:dynasoar:2006}capacity") or -1)


def test_a_beat_with_figures_needs_no_status_call(tmp_path: Path) -> None:
    args = ["--port", "0", "--data", str(tmp_path / "sp")]
    with start_actor("sp", args, tmp_path / "sp.log") as sp:
        address = silent_address()
        reply = beat(sp.url, address, capacity=5)  # nobody there to ask: the figures suffice
        assert capacity_of(reply) == 5
        assert beats.interval_of(reply.body, 2.0) == 2.0  # a small fleet beats as it asks
        assert reply.body.findtext(".//{urn:dynasoar:2006}state") == "up"  # registered
        # Without figures the SP must ask the host itself, and nobody answers there.
        request = (
            '<sp:RegisterHost xmlns:sp="urn:dynasoar:2006:provider">'
            f"<sp:address>{silent_address()}</sp:address></sp:RegisterHost>"
        )
        from lxml import etree

        async def plain() -> None:
            pool = ConnectionPool()
            try:
                await SoapClient(pool).call(
                    sp.url + SP_PORT, beats.ACTION, etree.fromstring(request), timeout=10.0
                )
            finally:
                await pool.close()

        with pytest.raises(DynasoarError, match="did not answer Status"):
            asyncio.run(plain())


def test_a_beat_carries_the_hosts_snapshot_figures_into_the_registry(tmp_path: Path) -> None:
    args = ["--port", "0", "--data", str(tmp_path / "sp")]
    with start_actor("sp", args, tmp_path / "sp.log") as sp:
        address = silent_address()
        figures = SnapshotStats(held=2, bytes=17 << 20, taken=2, restored=5, fallbacks=1)
        reply = beat(sp.url, address, capacity=4, snapshots=figures)
        shown = reply.body.find(".//{urn:dynasoar:2006}snapshots")
        assert shown is not None and shown.findtext("{urn:dynasoar:2006}restored") == "5"
        time.sleep(0.5)  # the SP's next beat must come no sooner than a quarter interval
        beat(sp.url, address, capacity=4, snapshots=figures)  # taken with a batch of beats
        registry = sqlite3.connect(tmp_path / "sp" / "registry.sqlite")
        deadline = time.monotonic() + 30
        while True:
            (row,) = registry.execute(
                "SELECT snapshots FROM hosts WHERE address = ?", (address,)
            ).fetchall()
            if json.loads(row[0]).get("restored") == 5 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert json.loads(row[0]) == {
            "held": 2, "bytes": 17 << 20, "taken": 2, "restored": 5, "fallbacks": 1
        }


def test_figures_are_believed_only_from_a_trusted_host(tmp_path: Path) -> None:
    host_key, host_cert = make_keypair(tmp_path / "keys", "hp")
    other_key, other_cert = make_keypair(tmp_path / "keys", "stranger")
    hp = start_actor(
        "hp",
        ["--port", "0", "--data", str(tmp_path / "hp"), "--capacity", "3",
         "--key", str(host_key), "--cert", str(host_cert)],
        tmp_path / "hp.log",
    )
    sp = start_actor(
        "sp",
        ["--port", "0", "--data", str(tmp_path / "sp"), "--trust", str(host_cert)],
        tmp_path / "sp.log",
    )
    try:
        trusted = Credentials.load(host_key, host_cert)
        # Signed by the trusted host: its figures are taken as they are.
        assert capacity_of(beat(sp.url, silent_address(), 7, trusted)) == 7
        # Unsigned: the SP asks the host itself (the real HP says 3), whatever the beat says.
        assert capacity_of(beat(sp.url, hp.url, 999)) == 3
        # Signed by a stranger: refused outright.
        stranger = Credentials.load(other_key, other_cert)
        with pytest.raises(DynasoarError, match="trust"):
            beat(sp.url, silent_address(), 7, stranger)
    finally:
        sp.stop()
        hp.stop()


def test_list_hosts_answers_from_the_figures_heard(tmp_path: Path) -> None:
    """ListHosts asks no host anything: a host heard beating is listed up with its figures and
    when it was heard, though nobody answers at its address now; a host named on the command
    line that never answered is down, and was never seen."""
    named = silent_address()
    args = ["--port", "0", "--data", str(tmp_path / "sp"), "--hp", named]
    with start_actor("sp", args, tmp_path / "sp.log") as sp:
        beating = silent_address()
        beat(sp.url, beating, capacity=5)
        client = ProviderClient(sp.url)
        for _ in range(2):  # listing changes nothing: the same the second time
            hosts = {h.address: h for h in client.call("ListHosts")}
            assert hosts[beating].state == "up"  # a live check would have found it silent
            assert hosts[beating].capacity == 5
            assert hosts[beating].lastSeen is not None
            assert hosts[named].state == "down"  # checked at start: nobody there
            assert hosts[named].lastSeen is None
        assert f"host {beating} is down" not in sp.log()


def test_a_host_that_does_not_beat_is_checked_by_the_control_loop(tmp_path: Path) -> None:
    """A host named on the command line that did not answer at start is down; nothing is
    heard from it (it does not beat), so the control loop's periodic work checks it: once it
    answers, it is up, without anyone listing the hosts for it."""
    named = silent_address()
    args = ["--port", "0", "--data", str(tmp_path / "sp"), "--hp", named,
            "--reconcile-interval", "1"]
    with start_actor("sp", args, tmp_path / "sp.log") as sp:
        client = ProviderClient(sp.url)
        assert {h.address: h.state for h in client.call("ListHosts")}[named] == "down"
        port = named.rpartition(":")[2]
        hp_args = ["--port", port, "--data", str(tmp_path / "hp")]  # no --sp: it never beats
        with start_actor("hp", hp_args, tmp_path / "hp.log"):
            wait_for(
                lambda: {h.address: h.state for h in client.call("ListHosts")}[named] == "up",
                what="the control loop to find the host answering",
            )
            assert f"host {named} is up again" in sp.log()
