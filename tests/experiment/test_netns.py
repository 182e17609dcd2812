"""The emulated network: a profile measurably delays and throttles traffic between two of our
namespaces, and nothing of ours is left behind, whether the run ends normally, by an exception
or by a signal."""

from __future__ import annotations

import http.client
import http.server
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynasoar.experiment.netns import (
    Link,
    Namespaces,
    NamespaceThread,
    command,
    list_namespaces,
    ours,
    pids_in,
    remove_leftovers,
)
from dynasoar.experiment.probe import calibrate
from dynasoar.experiment.shaping import Profile, Shaper

from .conftest import needs_network

pytestmark = needs_network


def _http_round_trip(far: NamespaceThread, near: NamespaceThread, address: str) -> float:
    """Seconds for one HTTP GET on a fresh connection (handshake + request), near to far."""

    class Quiet(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = far.run(http.server.HTTPServer, (address, 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def get() -> float:
        started = time.perf_counter()
        conn = http.client.HTTPConnection(address, server.server_address[1], timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"ok"
        conn.close()
        return time.perf_counter() - started

    try:
        return min(near.run(get) for _ in range(3))
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def pair() -> Iterator[tuple[Namespaces, Link]]:
    with Namespaces() as nss:
        left, right = nss.add("a"), nss.add("b")
        yield nss, nss.link(left, right)


def test_a_profile_delays_and_throttles_traffic_between_two_namespaces(
    pair: tuple[Namespaces, Link],
) -> None:
    _, link = pair
    with (
        Shaper([link]) as shaper,
        NamespaceThread(link.left_ns) as near,
        NamespaceThread(link.right_ns) as far,
    ):
        plain = calibrate(near, far, link.right_addr, 4 << 20)
        plain_http = _http_round_trip(far, near, link.right_addr)
        shaper.apply(Profile("test", 20e6, 0.040))
        shaped = calibrate(near, far, link.right_addr, 1 << 20)
        shaped_http = _http_round_trip(far, near, link.right_addr)
    assert plain.rtt < 0.005
    assert 0.040 <= shaped.rtt < 0.060
    # an HTTP request on a new connection: two round trips (handshake, then request)
    assert plain_http < 0.05
    assert 0.080 <= shaped_http < 0.2
    assert plain.goodput_bit > 200e6
    assert 10e6 < shaped.goodput_bit <= 21e6


def test_the_network_is_ours_alone(pair: tuple[Namespaces, Link]) -> None:
    nss, link = pair
    assert set(ours()) == {link.left_ns, link.right_ns}
    host_links = command("ip", "-o", "link", "show")
    assert nss.tag not in host_links  # the veth ends were born inside the namespaces
    inside = command("ip", "-n", link.left_ns, "-o", "addr", "show")
    assert f"{link.left_addr}/24" in inside
    assert link.left_addr.startswith("10.213.")


def test_closing_removes_namespaces_links_and_processes() -> None:
    with Namespaces() as nss:
        left, right = nss.add("a"), nss.add("b")
        link = nss.link(left, right)
        sleeper = subprocess.Popen(["ip", "netns", "exec", right, "sleep", "300"])
        shaper = Shaper([link])
        shaper.apply(Profile("test", 100e6, 0.002))
        assert pids_in(right)
    shaper.close()
    assert sleeper.wait(timeout=10) != 0  # killed with the namespace
    assert not ours()
    assert nss.tag not in command("ip", "-o", "link", "show")


def test_an_exception_inside_still_tears_everything_down() -> None:
    tag = ""
    with pytest.raises(RuntimeError, match="boom"), Namespaces() as nss:
        tag = nss.tag
        link = nss.link(nss.add("a"), nss.add("b"))
        with Shaper([link]) as shaper:
            shaper.apply(Profile("test", 100e6, 0.002))
            raise RuntimeError("boom")
    assert not [ns for ns in list_namespaces() if ns.startswith(tag + "-")]


SCRIPT = textwrap.dedent(
    """
    import time
    from dynasoar.experiment.netns import Namespaces
    from dynasoar.experiment.shaping import Profile, Shaper
    from dynasoar.experiment.signals import interrupts_unwind

    with interrupts_unwind(), Namespaces() as nss:
        link = nss.link(nss.add("a"), nss.add("b"))
        with Shaper([link]) as shaper:
            shaper.apply(Profile("test", 100e6, 0.002))
            print("ready", flush=True)
            time.sleep(120)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_tears_everything_down(signum: int, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    assert len(ours(process.pid)) == 2
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    assert process.returncode != 0
    assert "Interrupted" in err or "KeyboardInterrupt" in err
    assert ours(process.pid) == []


def test_leftovers_of_a_killed_run_are_removed() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    name = f"dsx{gone.pid}-left"
    command("ip", "netns", "add", name)
    try:
        assert name in remove_leftovers()
        assert name not in list_namespaces()
    finally:
        command("ip", "netns", "delete", name, check=False)
    assert os.getpid()  # our own namespaces are never taken for leftovers
