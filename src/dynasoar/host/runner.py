"""Runs one deployed code package: ``python -m dynasoar.host.runner``.

Imports the package's WSGI callable, wraps it in the :class:`ServiceContainer`, serves it with
waitress on its own port and prints ``listening on http://H:P`` once ready. Exits when its Host
Provider goes away, so no deployment outlives the host that owns it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import waitress.server

from dynasoar.host.container import ServiceContainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dynasoar-runner")
    parser.add_argument("--root", type=Path, required=True, help="the unpacked package")
    parser.add_argument("--app", required=True, help="module:callable")
    parser.add_argument("--wsdl", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    os.chdir(args.root)
    sys.path.insert(0, str(args.root))
    module_name, _, attr = args.app.partition(":")
    app = getattr(importlib.import_module(module_name), attr)
    container = ServiceContainer(app, args.wsdl.read_bytes())

    server = waitress.server.create_server(
        container,
        host=args.host,
        port=args.port,
        threads=args.threads,
        ident="dynasoar-runner",
        clear_untrusted_proxy_headers=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: server.close())
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid, server), daemon=True).start()
    host, port = server.socket.getsockname()[:2]
    print(f"listening on http://{host}:{port}/", flush=True)
    try:
        server.run()
    except (OSError, ValueError):
        pass  # the socket was closed by SIGTERM or by the parent watch
    return 0


def _watch_parent(pid: int, server: waitress.server.BaseWSGIServer) -> None:
    while os.getppid() == pid:
        time.sleep(0.5)
    server.close()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
