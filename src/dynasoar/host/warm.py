"""A pre-started runner: ``python -m dynasoar.host.warm --control-fd N --parent-pid P``.

The Host Provider keeps a few of these ready (:mod:`dynasoar.host.backends.runner_pool`): the
interpreter started and the service runtime imported (waitress, lxml, spyne, the container), so
that a code package's cold start costs only its own import. Each says ``ready`` on its control
socket (a Unix SEQPACKET pair) and waits for one hand-over: a JSON order (the unpacked
package, its callable and WSDL, the host to listen on, its sandbox identity and limits) with
two descriptors, the write ends of the deployment's output pipe (becoming stdout and stderr)
and of its ready pipe. It then takes the sandbox identity (limits, groups, gid, uid, umask:
:func:`dynasoar.host.sandbox.take_identity`) *before* it imports or runs anything of the
package, and becomes the runner (:func:`dynasoar.host.runner.main`). If the Host Provider goes
away first, the control socket ends and so does it.

What it imports before the hand-over is the host's, read as the Host Provider's user: a package
cannot bring its own versions of those modules.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import socket

from dynasoar.host import runner, sandbox

#: The service runtime, imported before any package is known (names, not imports: only the
#: deployed services use spyne; a host without a module simply starts without it).
PRELOAD = (
    "lxml.etree",
    "waitress.server",
    "spyne",
    "spyne.protocol.soap",
    "spyne.server.wsgi",
)
#: An order is a few hundred bytes.
MAX_ORDER = 64 << 10
READY = b"ready"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dynasoar-warm-runner")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    args = parser.parse_args(argv)
    control = socket.socket(fileno=args.control_fd)
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    control.sendall(READY)
    try:
        data, fds, _, _ = socket.recv_fds(control, MAX_ORDER, 2)
    except OSError:
        return 0
    control.close()
    if not data or len(fds) != 2:  # the Host Provider went away before handing anything over
        for fd in fds:
            os.close(fd)
        return 0
    order = json.loads(data)
    output, ready = fds
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    sandbox.take_identity(sandbox.Limits(**order["limits"]), order["uid"], order["uid"])
    return runner.main(
        [
            "--root", order["root"], "--app", order["app"], "--wsdl", order["wsdl"],
            "--host", order["host"], "--port", "0",
            "--parent-pid", str(args.parent_pid), "--ready-fd", str(ready),
        ]
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
