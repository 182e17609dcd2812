"""A minimal upload receiver for the MTOM benchmark's baseline: it writes whatever body it gets
to a file and answers 200. ``python -m dynasoar.bench.sink DIR`` prints its URL."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from dynasoar.http import HttpServer, Request, Response, ServerLimits, new_event_loop


async def _serve(directory: Path) -> None:
    async def handle(request: Request) -> Response:
        path = directory / "upload.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            async for chunk in request.body:
                os.write(fd, chunk)
        finally:
            os.close(fd)
            path.unlink(missing_ok=True)
        return Response(200, [("Content-Type", "text/plain")], b"ok")

    server = HttpServer(handle, limits=ServerLimits(max_body_bytes=None))
    host, port = await server.start("127.0.0.1", 0)
    sys.stdout.write(f"listening on http://{host}:{port}/\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


def main() -> int:
    directory = Path(sys.argv[1])
    directory.mkdir(parents=True, exist_ok=True)
    loop = new_event_loop()
    try:
        loop.run_until_complete(_serve(directory))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
