"""The courier's delivery attempts, phase by phase, against a real HTTP endpoint on
127.0.0.1 and a real reply store: a 2xx delivers (once), a 503 or no answer is tried again
later, a 400 is given up, and an address no longer allowed or a reply out of time is given up
without a request made."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynasoar.http import ConnectionPool
from dynasoar.provider.courier import (
    CheckDestination,
    Claim,
    Pipeline,
    Send,
    Settle,
    Verdict,
    backoff,
    build_courier,
)
from dynasoar.provider.deliveries import DeliveryStore
from dynasoar.provider.registry import Registry
from dynasoar.provider.reply_policy import ReplyDestinations

HEAD = [("Content-Type", "text/xml; charset=utf-8")]


class Endpoint:
    def __init__(self) -> None:
        self.status = 202
        self.bodies: list[bytes] = []
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                endpoint.bodies.append(self.rfile.read(int(self.headers["content-length"])))
                self.send_response(endpoint.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/replies"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    e = Endpoint()
    yield e
    e.server.shutdown()
    e.server.server_close()


@pytest.fixture
def store(tmp_path: Path) -> DeliveryStore:
    return DeliveryStore(Registry(tmp_path / "registry.sqlite"), retry_for=60.0)


ALLOW = ReplyDestinations(["http://127.0.0.1:*/*"])


def attempt(store: DeliveryStore, address: str, allow: ReplyDestinations = ALLOW) -> Verdict:
    async def run() -> Verdict:
        pool = ConnectionPool()
        try:
            pipeline = Pipeline(
                [Claim(store), CheckDestination(allow), Send(pool, 5.0), Settle(store)]
            )
            (delivery,) = store.due(time.time() + 1, 1)
            result = await pipeline(delivery)
            assert result.verdict is not None
            return result.verdict
        finally:
            await pool.close()

    return asyncio.run(run())


def ready(store: DeliveryStore, address: str) -> str:
    return store.ready(None, address=address, head=HEAD, body=b"<reply/>", message_id="urn:m")


def test_a_2xx_delivers(store: DeliveryStore, endpoint: Endpoint) -> None:
    d = ready(store, endpoint.url)
    assert attempt(store, endpoint.url) is Verdict.DELIVERED
    assert endpoint.bodies == [b"<reply/>"]
    assert store.state_of(d) == ("delivered", 1, None)
    assert store.due(time.time() + 3600, 10) == [], "never tried again"


def test_a_503_is_tried_again_later(store: DeliveryStore, endpoint: Endpoint) -> None:
    endpoint.status = 503
    d = ready(store, endpoint.url)
    assert attempt(store, endpoint.url) is Verdict.RETRY
    assert store.state_of(d) == ("ready", 1, "answered HTTP 503")
    assert store.due(time.time(), 10) == []
    assert [x.id for x in store.due(time.time() + backoff(1) + 1, 10)] == [d]


def test_a_400_is_given_up(store: DeliveryStore, endpoint: Endpoint) -> None:
    endpoint.status = 400
    d = ready(store, endpoint.url)
    assert attempt(store, endpoint.url) is Verdict.GIVE_UP
    assert store.state_of(d) == ("undeliverable", 1, "refused with HTTP 400")


def test_no_one_listening_is_tried_again(store: DeliveryStore, endpoint: Endpoint) -> None:
    endpoint.server.shutdown()
    endpoint.server.server_close()
    d = ready(store, endpoint.url)
    assert attempt(store, endpoint.url) is Verdict.RETRY
    state, attempts, error = store.state_of(d)  # type: ignore[misc]
    assert (state, attempts) == ("ready", 1) and error


def test_an_address_no_longer_allowed_is_given_up_unsent(
    store: DeliveryStore, endpoint: Endpoint
) -> None:
    d = ready(store, endpoint.url)
    assert attempt(store, endpoint.url, ReplyDestinations()) is Verdict.GIVE_UP
    assert endpoint.bodies == []
    assert "--reply-to-allow" in (store.state_of(d) or ("", 0, ""))[2]


def test_a_reply_out_of_time_is_given_up_unsent(tmp_path: Path, endpoint: Endpoint) -> None:
    store = DeliveryStore(Registry(tmp_path / "r.sqlite"), retry_for=-1.0)
    ready(store, endpoint.url)
    assert attempt(store, endpoint.url) is Verdict.GIVE_UP
    assert endpoint.bodies == []


def test_a_delivery_another_attempt_holds_is_skipped(
    store: DeliveryStore, endpoint: Endpoint
) -> None:
    d = ready(store, endpoint.url)
    (delivery,) = store.due(time.time() + 1, 1)
    assert store.claim(d)

    async def run() -> Verdict | None:
        pool = ConnectionPool()
        try:
            pipeline = Pipeline([Claim(store), CheckDestination(ALLOW), Send(pool), Settle(store)])
            return (await pipeline(delivery)).verdict
        finally:
            await pool.close()

    assert asyncio.run(run()) is Verdict.SKIP
    assert endpoint.bodies == []


def test_the_courier_sends_what_becomes_due(store: DeliveryStore, endpoint: Endpoint) -> None:
    async def run() -> None:
        pool = ConnectionPool()
        courier = build_courier(store, pool, ALLOW)
        task = asyncio.create_task(courier.run())
        try:
            ready(store, endpoint.url)
            courier.wake()
            async with asyncio.timeout(30):
                while store.counts().get("delivered") != 1:
                    await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await pool.close()

    asyncio.run(run())
    assert endpoint.bodies == [b"<reply/>"]


def test_backoff_doubles_up_to_a_ceiling() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff(40) == 30.0


def test_phases_are_in_their_order(store: DeliveryStore) -> None:
    with pytest.raises(ValueError, match="out of order"):
        Pipeline([CheckDestination(ALLOW), Claim(store), Send(ConnectionPool()), Settle(store)])
