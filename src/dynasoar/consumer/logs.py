"""``dynasoar logs``: a service's output logs, read through the Service Provider's GetLogs.

Once: the last ``--tail`` lines of each deployment's log, or (without ``--tail``) all that the
hosts keep, page by page up to where each log stood at the first answer. ``--follow``: then
ask again every second from each log's cursor until interrupted, each call within its own
deadline. Lines go to stdout, prefixed by their deployment when several deployments are shown;
what is said about the logs (a deployment's state, bytes rotated away unread, hosts that did
not answer) goes to stderr.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.errors import TransportError

POLL_SECONDS = 1.0
CALL_SECONDS = 30.0
ENDED = ("failed", "undeployed", "exited", "lost")


@dataclass
class LogView:
    """What has been shown of a deployment's log so far."""

    cursor: int
    until: int  # when reading once: where its log stood at the first answer
    state: str = ""
    pending: str = ""  # a line not finished yet (prefixed output only)


@dataclass
class Reader:
    client: ProviderClient
    service: str
    deployment: str | None
    out: TextIO
    err: TextIO
    views: dict[str, LogView] = field(default_factory=dict)
    silent_hosts: set[str] = field(default_factory=set)

    def ask(self, tail: int | None) -> list[Any]:
        cursors = [{"deployment": d, "offset": v.cursor} for d, v in self.views.items()]
        reply = self.client.call(
            "GetLogs", name=self.service, deployment=self.deployment, tail=tail, cursor=cursors
        )
        for host in reply.unreachable or []:
            if host not in self.silent_hosts:
                self.silent_hosts.add(host)
                self.err.write(f"({host} did not answer: its logs of {self.service} are missing)\n")
        logs = list(reply.log or [])
        prefixed = len(set(self.views) | {item.deployment for item in logs}) > 1
        for item in logs:
            self._show(item, prefixed)
        self.out.flush()
        self.err.flush()
        return logs

    def _show(self, item: Any, prefixed: bool) -> None:
        view = self.views.get(item.deployment)
        if view is None:
            view = self.views[item.deployment] = LogView(item.start, item.end)
        elif item.start > view.cursor:
            self.err.write(
                f"({item.deployment}: {item.start - view.cursor} bytes were rotated away "
                "before they were read)\n"
            )
        if item.state != view.state:
            said = (item.reason or "").strip().splitlines()
            reason = f": {said[0]}{' …' if len(said) > 1 else ''}" if said else ""
            where = f" on {item.host}" if item.host else ""
            self.err.write(f"# {item.deployment}{where}: {item.state}{reason}\n")
            view.state = item.state
        view.cursor = item.next
        text = item.text or ""
        if not prefixed:
            self.out.write(view.pending + text)
            view.pending = ""
            return
        lines = (view.pending + text).split("\n")
        view.pending = lines.pop()
        if view.pending and item.state in ENDED and item.next >= item.end:
            lines.append(view.pending)  # its last words: no newline will come
            view.pending = ""
        label = f"[{item.deployment[:12]}] "
        self.out.writelines(f"{label}{line}\n" for line in lines)

    def flush(self) -> None:
        for deployment, view in self.views.items():
            if view.pending:
                self.out.write(f"[{deployment[:12]}] {view.pending}\n")
                view.pending = ""
        self.out.flush()


def show_logs(
    sp: str,
    service: str,
    *,
    deployment: str | None = None,
    tail: int | None = None,
    follow: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    reader = Reader(ProviderClient(sp, timeout=CALL_SECONDS), service, deployment, out, err)
    try:
        logs = reader.ask(tail)
        if not follow:
            while any(v.cursor < v.until for v in reader.views.values()):
                before = {d: v.cursor for d, v in reader.views.items()}
                reader.ask(None)  # the next pages of the logs that had more
                if before == {d: v.cursor for d, v in reader.views.items()}:
                    break  # no page came: what was there is shown
            if not logs:
                which = f"deployment {deployment} of " if deployment else ""
                err.write(f"dynasoar logs: no logs of {which}{service} on its hosts\n")
                return 1
            return 0
        while True:
            time.sleep(POLL_SECONDS)
            try:
                reader.ask(None)
            except TransportError as exc:  # the SP restarting: keep following
                err.write(f"({exc.reason}; trying again)\n")
    finally:
        reader.flush()
