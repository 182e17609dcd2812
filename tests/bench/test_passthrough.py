"""The relay bench's floors (our HTTP parts; a hand-rolled forwarder; the hand-rolled one doing
the least an SP must) forward what they get, as it came, and bring the reply back; the last
answers a message whose WS-Addressing is broken with its fault, and logs each message."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from dynasoar.bench.relay import BODY, ECHO_NS
from dynasoar.http import ConnectionPool, HttpServer, Request, Response, new_event_loop

Seen = list[tuple[bytes, bytes, bytes]]
Replies = list[tuple[int, bytes, str]]


async def _forwarded(
    module: str, bodies: list[bytes], log: Path, lines: int
) -> tuple[Seen, Replies]:
    seen: Seen = []

    async def upstream(request: Request) -> Response:
        body = await request.body.read_all(1 << 20)
        seen.append(
            (
                body,
                (request.headers.get("content-type") or "").encode(),
                (request.headers.get("soapaction") or "").encode(),
            )
        )
        return Response(200, [("Content-Type", "text/xml; charset=utf-8")], b"<r>" + body + b"</r>")

    server = HttpServer(upstream)
    host, port = await server.start("127.0.0.1", 0)
    floor = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        f"http://{host}:{port}/service",
        stdout=asyncio.subprocess.PIPE,
        stderr=log.open("wb"),
    )
    pool = ConnectionPool()
    try:
        assert floor.stdout is not None
        line = (await asyncio.wait_for(floor.stdout.readline(), 30)).decode()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.split()[-1]
        replies = []
        for text in bodies:
            reply = await pool.request(
                url,
                "POST",
                headers=[("Content-Type", "text/xml; charset=utf-8"), ("SOAPAction", '"urn:x"')],
                body=text,
                timeout=10,
            )
            data = await reply.read_all(1 << 20)
            replies.append((reply.status, data, reply.headers.get("content-type") or ""))
        # Access lines that come together are written together, a moment later.
        deadline = time.monotonic() + 10
        while len(log.read_text().splitlines()) < lines and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return seen, replies
    finally:
        await pool.close()
        floor.kill()
        await floor.wait()
        await server.close(grace=1.0)


@pytest.mark.parametrize("module", ["dynasoar.bench.passthrough", "dynasoar.bench.handrolled"])
def test_the_floor_forwards_bodies_and_fields_unchanged(module: str, tmp_path: Path) -> None:
    big = b"<b>" + b"x" * 100_000 + b"</b>"
    seen, replies = _run(module, [b"<a/>", big], tmp_path / "floor.log")
    assert seen == [
        (b"<a/>", b"text/xml; charset=utf-8", b'"urn:x"'),
        (big, b"text/xml; charset=utf-8", b'"urn:x"'),
    ]
    assert replies == [
        (200, b"<r><a/></r>", "text/xml; charset=utf-8"),
        (200, b"<r>" + big + b"</r>", "text/xml; charset=utf-8"),
    ]


def _run(module: str, bodies: list[bytes], log: Path, lines: int = 0) -> tuple[Seen, Replies]:
    loop = new_event_loop()
    try:
        return loop.run_until_complete(_forwarded(module, bodies, log, lines))
    finally:
        loop.close()


def test_the_least_sp_forwards_a_sound_message_and_answers_a_broken_one_itself(
    tmp_path: Path,
) -> None:
    sound = BODY.format(to="http://127.0.0.1/services/Echo", text="payload").encode()
    # WS-Addressing in use, but no wsa:Action: MessageAddressingHeaderRequired.
    no_action = sound.replace(f"<wsa:Action>{ECHO_NS}/Echo</wsa:Action>".encode(), b"")
    log = tmp_path / "floor.log"
    seen, replies = _run("dynasoar.bench.minimal", [sound, no_action, b"not XML"], log, lines=3)
    assert seen == [(sound, b"text/xml; charset=utf-8", b'"urn:x"')]  # only the sound one
    assert replies[0] == (200, b"<r>" + sound + b"</r>", "text/xml; charset=utf-8")
    assert [(status, content_type.split(";")[0]) for status, _, content_type in replies[1:]] == [
        (500, "text/xml"),
        (500, "text/xml"),
    ]
    assert b"MessageAddressingHeaderRequired" in replies[1][1]
    assert b"not well-formed" in replies[2][1]
    lines = log.read_text().splitlines()
    assert [line.split(" status=")[1].split()[0] for line in lines] == ["200", "500", "500"]
    assert "id=urn:uuid:6f1c4a1e-bench-0000-0000-000000000000 service=Echo" in lines[0]
    assert "fault=MessageAddressingHeaderRequired" in lines[1]
    assert "fault=MalformedMessage" in lines[2]
