"""A server gives back what a large request made it allocate (dynasoar.http.memory): its RSS
follows what it holds, not the largest message it has seen. Measured on a real server process
whose handler parses each body with lxml, as the actors do; a 1 MiB attribute flood makes a
~30 MiB tree."""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from dynasoar.http.memory import can_give_back

pytestmark = pytest.mark.skipif(not can_give_back(), reason="glibc's malloc_trim is needed")

MiB = 1 << 20

SERVER = """
import asyncio, sys
from lxml import etree
from dynasoar.http import HttpServer, Response, ServerLimits
from dynasoar.http import new_event_loop

async def handle(request):
    body = await request.body.read_all(64 << 20)
    tree = etree.fromstring(body)
    return Response(200, [("Content-Type", "text/plain")], b"%d" % len(tree.attrib))

async def main():
    limit = None if sys.argv[1] == "never" else int(sys.argv[1])
    server = HttpServer(handle, limits=ServerLimits(give_back_after=limit))
    host, port = await server.start()
    print(port, flush=True)
    await asyncio.Event().wait()

new_event_loop().run_until_complete(main())
"""


def flood(count: int) -> bytes:
    return b"<x " + b" ".join(b"a%d='v'" % i for i in range(count)) + b"/>"


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Server:
    def __init__(self, limit: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER, limit], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def post(self, body: bytes) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("POST", "/", body=body)
            reply = conn.getresponse()
            assert reply.status == 200
            return reply.read()
        finally:
            conn.close()

    def settled_rss(self) -> int:
        time.sleep(0.2)  # the give-back runs once the answer is out
        return rss(self.process.pid)


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server(str(MiB))
    yield server
    server.process.kill()
    server.process.wait()


def test_the_memory_of_a_large_request_goes_back_once_it_is_answered(server: Server) -> None:
    server.post(flood(10))  # the server's own first-use growth
    baseline = server.settled_rss()
    for _ in range(3):
        assert server.post(flood(100_000)) == b"100000"
        after = server.settled_rss()
        assert after - baseline <= 8 * MiB, f"RSS up {(after - baseline) / MiB:.1f} MiB"
