"""A socket holder, as systemd is for a socket-activated service: it owns the listening socket,
starts the server with it (``LISTEN_FDS=1``, ``LISTEN_PID``, descriptor 3) and starts it again
whenever it exits, so that a restart (SIGTERM, then a new process) refuses no connection:
they wait in the socket's backlog meanwhile.

    python socket_holder.py PIDFILE -- COMMAND...

Prints ``holder listening on http://127.0.0.1:PORT``; writes the server's pid to PIDFILE each
time it starts one; stops (and stops the server) on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time


def main() -> int:
    pidfile, separator, *command = sys.argv[1:]
    assert separator == "--" and command
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    print(f"holder listening on http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    while not stopping:
        child = subprocess.Popen(
            # $$ is the shell's pid, which exec hands on to the server: LISTEN_PID must be it.
            ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "sh", *command],
            pass_fds=(3,),
            preexec_fn=lambda: os.dup2(listener.fileno(), 3),
            stdout=sys.stderr,
        )
        with open(pidfile + ".tmp", "w") as out:
            out.write(str(child.pid))
        os.replace(pidfile + ".tmp", pidfile)
        while child.poll() is None:
            if stopping:
                child.send_signal(signal.SIGTERM)
                child.wait(timeout=60)
            time.sleep(0.05)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
