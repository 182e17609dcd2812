"""Runs one deployed code package: ``python -m dynasoar.host.runner``.

Imports the package's WSGI callable, wraps it in the :class:`ServiceContainer`, serves it with
waitress on its own port and reports ``listening on http://H:P`` once ready. Exits when its Host
Provider goes away, so no deployment outlives the host that owns it.

The report goes to ``--ready-fd`` (a pipe of the Host Provider's own), so that stdout and
stderr are the service's plain output (its log). A package that cannot start reports
``failed`` and then what went wrong, in the package's terms
(:mod:`dynasoar.host.package_errors`). Without ``--ready-fd`` the report goes to stdout.
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
import types
from pathlib import Path
from typing import Any

import waitress.server

from dynasoar.host.container import ServiceContainer
from dynasoar.host.package_errors import describe

LISTENING = "listening on "
FAILED = "failed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dynasoar-runner")
    parser.add_argument("--root", type=Path, required=True, help="the unpacked package")
    parser.add_argument("--app", required=True, help="module:callable")
    parser.add_argument("--wsdl", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--ready-fd", type=int, default=1, help="where to report (default stdout)")
    args = parser.parse_args(argv)
    root: Path = args.root.absolute()
    _log_in_package_terms(root)

    os.chdir(root)
    sys.path.insert(0, str(root))
    try:
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
    except Exception as exc:
        report = describe(exc, root)
        print(f"the service could not start:\n{report}", file=sys.stderr, flush=True)
        _report(args.ready_fd, f"{FAILED}\n{report}\n")
        return 1
    signal.signal(signal.SIGTERM, lambda *_: server.close())
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid, server), daemon=True).start()
    host, port = server.socket.getsockname()[:2]
    _report(args.ready_fd, f"{LISTENING}http://{host}:{port}/\n")
    try:
        server.run()
    except (OSError, ValueError):
        pass  # the socket was closed by SIGTERM or by the parent watch
    return 0


def _report(fd: int, text: str) -> None:
    """Tell the Host Provider (then let go of its pipe: stdout stays the service's)."""
    if fd == 1:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    data = text.encode("utf-8", "replace")
    try:
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)


def _log_in_package_terms(root: Path) -> None:
    """Exceptions the runner logs (waitress's, of a request the app failed) or that end a thread
    show the package's frames only: the log is read by the service's owner, who has no business
    with the host's files."""

    class PackageFormatter(logging.Formatter):
        def formatException(self, ei: Any) -> str:
            return describe(ei[1], root) if ei and ei[1] is not None else ""

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PackageFormatter("%(asctime)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])

    def excepthook(
        kind: type[BaseException], exc: BaseException, tb: types.TracebackType | None
    ) -> None:
        print(describe(exc.with_traceback(tb), root), file=sys.stderr, flush=True)

    sys.excepthook = excepthook
    threading.excepthook = lambda hook: excepthook(
        hook.exc_type, hook.exc_value or hook.exc_type(), hook.exc_traceback
    )


def _watch_parent(pid: int, server: waitress.server.BaseWSGIServer) -> None:
    while os.getppid() == pid:
        time.sleep(0.5)
    server.close()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
