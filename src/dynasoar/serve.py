"""Running an actor as a server process: its listening socket (bound here, or inherited from
systemd socket activation or from the process it replaced), the one ``dynasoar X listening on
URL`` line on stdout, and a life cycle that refuses no one:

    start      bind (or inherit) the socket, build the handler (an SP restores its deployments
               meanwhile: connections wait in the backlog, none is refused or answered early),
               then accept
    SIGTERM    quiesce the actor (its control loop stops first), stop accepting, let in-flight
               messages finish within the grace period, answering each with Connection: close;
               what outlives the grace is answered with a fault (dyn:ShuttingDown); stop
    SIGHUP     the same, but the listening socket stays open (new connections wait in its
               backlog) and the same command line is exec'd in place with it (same pid, new code)
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import re
import signal
import socket
import ssl
import sys
from dataclasses import dataclass
from typing import NoReturn, Protocol

from dynasoar.http import Handler, HttpServer, Response, ServerLimits

log = logging.getLogger(__name__)

#: sd_listen_fds(3): inherited sockets start at this descriptor.
LISTEN_FDS_START = 3
#: After the grace period, how long the faults answering cut messages get to be written.
CUT_WRITE_SECONDS = 2.0
#: How long a drain waits with nothing in flight before closing idle keep-alive connections
#: (a client may be about to send on one: it is answered, with Connection: close).
QUIET_SECONDS = 0.5
#: The name a restart in place gives the socket it hands itself (systemd names its own).
REEXEC_NAME = "dynasoar-restart"


class StartupError(Exception):
    """The server cannot start, for a reason its operator can fix (printed as one line)."""


class Served(Protocol):
    """An actor as :func:`serve` runs it."""

    async def start(self, url: str) -> Handler:
        """Get ready to serve at ``url``; the handler is used from the first request on."""
        ...

    async def quiesce(self) -> None:
        """Stop starting work of one's own (control loops, heartbeats); still serving."""
        ...

    def cut_short(self, reason: str) -> None:
        """The grace period is over: messages still in flight are answered with a fault now."""
        ...

    async def stop(self) -> None:
        """Release everything (no connection is left)."""
        ...


@dataclass
class Outcome:
    """How :func:`serve` ended: ``restart`` holds the listening socket to exec again with."""

    restart: socket.socket | None = None


#: A Host field with one of these is not a host[:port] (it is asked once per request).
_NOT_A_HOST = re.compile(r"[/\\@ \t]")


def base_url_of(host_header: str | None, fallback: str) -> str:
    """The server's URL as the client addressed it (for addresses written into WSDLs)."""
    if host_header and _NOT_A_HOST.search(host_header) is None:
        return f"{fallback.partition('://')[0]}://{host_header}"
    return fallback


def wants_wsdl(query: str) -> bool:
    """``?wsdl`` (any case, with or without ``=``), as every SOAP stack asks for a contract."""
    return query.lower().split("=", 1)[0] == "wsdl"


def text(status: int, body: str) -> Response:
    return Response(status, [("Content-Type", "text/plain; charset=utf-8")], body.encode())


# -- the listening socket ----------------------------------------------------------------------


def bind_listener(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A socket listening on ``host:port`` (0: a free port), or a StartupError saying why not."""
    if not 0 <= port <= 65535:
        raise StartupError(f"--port {port} is not a TCP port: use 0 (any free port) to 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(
            f"--host {host!r} is not an address of this machine ({exc.strerror}); "
            "use e.g. 127.0.0.1, 0.0.0.0 or a name that resolves"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"{where} is already in use (another dynasoar?): stop it or choose another --port"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise StartupError(f"--host {host} is not an address of this machine") from None
        if exc.errno == errno.EACCES:
            raise StartupError(
                f"not allowed to listen on {where}: ports below 1024 need root"
            ) from None
        raise StartupError(f"cannot listen on {where}: {exc.strerror}") from None
    return sock


def inherited_listener() -> tuple[socket.socket, str] | None:
    """The listening socket handed over by systemd socket activation (``LISTEN_FDS``) or by
    the process this one replaced (the same protocol), if any, with its name. The variables
    are removed, so that processes started from here do not take them as theirs."""
    pid = os.environ.pop("LISTEN_PID", None)
    count = os.environ.pop("LISTEN_FDS", None)
    name = os.environ.pop("LISTEN_FDNAMES", "").partition(":")[0]
    if pid != str(os.getpid()) or not count:
        return None
    if not count.isdigit() or int(count) < 1:
        raise StartupError(f"LISTEN_FDS={count!r}: expected the number of sockets passed")
    if int(count) > 1:
        log.warning("%s sockets were passed; serving on the first only", count)
    try:
        sock = socket.socket(fileno=LISTEN_FDS_START)
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError as exc:
        raise StartupError(f"the socket passed as descriptor 3 is unusable: {exc}") from None
    if sock.type != socket.SOCK_STREAM or not listening:
        raise StartupError("the socket passed as descriptor 3 is not a listening TCP socket")
    sock.set_inheritable(False)
    return sock, name


def listen(host: str, port: int) -> tuple[socket.socket, str | None]:
    """The socket to serve on: the one passed to this process (socket activation, or a
    restart in place), with its name, else one bound to ``host:port`` (name None)."""
    inherited = inherited_listener()
    if inherited is not None:
        return inherited
    return bind_listener(host, port), None


def reexec(sock: socket.socket) -> NoReturn:
    """Replace this process with the same command line (same pid), handing it ``sock`` the way
    systemd hands over sockets: descriptor 3, ``LISTEN_FDS=1``, ``LISTEN_PID`` = our pid."""
    if sock.fileno() != LISTEN_FDS_START:
        os.dup2(sock.fileno(), LISTEN_FDS_START)
    os.set_inheritable(LISTEN_FDS_START, True)
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ["LISTEN_FDNAMES"] = REEXEC_NAME
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os.execv(sys.executable, sys.orig_argv)


# -- the life cycle ----------------------------------------------------------------------------


async def serve(
    role: str,
    host: str,
    port: int,
    app: Served,
    *,
    grace: float = 30.0,
    limits: ServerLimits | None = None,
    tls: ssl.SSLContext | None = None,
    reexec_on_hangup: bool = False,
    listener: tuple[socket.socket, str | None] | None = None,
) -> Outcome:
    """Serve ``app`` until SIGTERM / SIGINT (or SIGHUP, when it re-execs), then stop in order:
    the actor's own work, accepting, in-flight messages, the actor. ``listener`` is the socket
    from :func:`listen`, when the caller took it before building the actor (so that a port in
    use stops the start before the actor touches its state); else it is taken here."""
    loop = asyncio.get_running_loop()
    ending: asyncio.Future[str] = loop.create_future()

    def end(how: str) -> None:
        if not ending.done():
            ending.set_result(how)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, end, "stop")
    if reexec_on_hangup:
        loop.add_signal_handler(signal.SIGHUP, end, "restart")
    else:
        loop.add_signal_handler(signal.SIGHUP, log.info, "SIGHUP: %s has nothing to reload", role)

    sock, passed_as = listener or listen(host, port)
    if passed_as is not None:
        log.info(
            "serving on the socket %s (--host/--port are not used)",
            "kept over the restart" if passed_as == REEXEC_NAME else "passed to this process",
        )
    name = sock.getsockname()
    url = f"{'https' if tls is not None else 'http'}://{name[0]}:{name[1]}"
    try:
        handler = await app.start(url)
    except BaseException:
        sock.close()
        raise
    server = HttpServer(handler, limits=limits or ServerLimits())
    # Kept aside for a restart: closing the server must not close the socket.
    kept = sock.dup() if reexec_on_hangup else None
    await server.start(sock=sock, ssl=tls)
    # Everything loaded so far (spyne, zeep, lxml, contracts) lives as long as the process:
    # keep it out of the cyclic collector, whose full passes would otherwise walk it again
    # and again as messages allocate (the per-message cost triples without this).
    gc.collect()
    gc.freeze()
    _announce(f"dynasoar {role} listening on {url}")

    how = await ending
    log.info(
        "%s %s: finishing in-flight messages (grace %.0f s)",
        role,
        "restarting in place" if how == "restart" else "stopping",
        grace,
    )
    if how != "restart" and kept is not None:
        # Stopping for good: the socket kept for a restart would hold new connections in its
        # backlog until the process ends, then reset them, after a balancer had sent them a
        # message it may not send again. Closed, it refuses them: tried elsewhere at once.
        kept.close()
        kept = None
    await app.quiesce()
    server.stop_accepting()
    if not await server.drain(grace, quiet=QUIET_SECONDS):
        app.cut_short(f"the {role} is {'restarting' if how == 'restart' else 'stopping'}")
        await server.drain(CUT_WRITE_SECONDS, quiet=0.0)
    await server.abort()
    await app.stop()
    if how == "restart" and kept is not None:
        return Outcome(restart=kept)
    return Outcome()


def _announce(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):  # nobody reads our stdout any more (a restart)
        pass
