"""A deployed sequence in stints, against a stand-in endpoint on the loopback (no network
namespaces needed): one connection, the stints in order, each stopping when it is done."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator

import pytest

from dynasoar.experiment.calls import Operation, Stint, sequence


class _Compute(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the sequence uses one connection
    asked: list[tuple[int, int]] = []  # (client port, millis), in order

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        millis = int(re.search(rb"<e:millis>(\d+)</e:millis>", body).group(1))  # type: ignore[union-attr]
        self.asked.append((self.client_address[1], millis))
        reply = b"<ComputeResponse><iterations>1</iterations></ComputeResponse>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.send_header("X-Dynasoar-Cold", "1" if len(self.asked) == 1 else "0")
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    _Compute.asked = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Compute)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/services/X"
    server.shutdown()
    server.server_close()


def test_stints_run_in_order_on_one_connection(endpoint: str) -> None:
    stints = [
        Stint(Operation(10), least=2, most=9, done=lambda d: len(d) >= 3),
        Stint(Operation(1), least=2, most=2, done=lambda _: True),
        Stint(Operation(100), least=1, most=5, done=lambda _: False),
    ]
    timings, cold = sequence(endpoint, stints)

    assert cold
    assert [len(t) for t in timings] == [3, 2, 5]
    assert [m for _, m in _Compute.asked] == [10] * 3 + [1] * 2 + [100] * 5
    assert len({port for port, _ in _Compute.asked}) == 1
