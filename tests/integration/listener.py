"""A consumer's reply endpoint for the tests: a real HTTP server on 127.0.0.1 whose URL a test
sends as wsa:ReplyTo / wsa:FaultTo. It records every POST and answers each with the next status
of a script (then a default), so that a test can make deliveries fail before they succeed."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from lxml import etree

from .wire import NSMAP


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the listener answered

    @property
    def xml(self) -> etree._Element:
        return etree.fromstring(self.body)

    def text(self, path: str) -> str | None:
        el = self.xml.find(path, NSMAP)
        return None if el is None else el.text


class Listener:
    def __init__(self, statuses: Sequence[int] = (), default: int = 202, port: int = 0) -> None:
        self.received: list[Received] = []
        self._script = list(statuses)
        self._default = default
        self._lock = threading.Condition()
        self._server: http.server.ThreadingHTTPServer | None = None
        self.port = port
        self.start()

    def start(self) -> None:
        """Listen (again, on the same port once it had one)."""
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with listener._lock:
                    status = listener._script.pop(0) if listener._script else listener._default
                    listener.received.append(
                        Received(
                            self.path, {k.lower(): v for k, v in self.headers.items()}, body, status
                        )
                    )
                    listener._lock.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening: deliveries meet a refused connection until :meth:`start`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def url(self, path: str = "/replies") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Received]:
        """The first ``count`` messages received, once they are in."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out waiting for {count} deliveries; got {len(self.received)}"
                    )
                self._lock.wait(left)
            return list(self.received[:count])

    def __enter__(self) -> Listener:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
