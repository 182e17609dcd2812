"""Deployments' output logs on a Host Provider: bounded, rotating, kept after a deployment ends.

Each deployment's log is a directory ``DATA/logs/ID/`` (the HP's alone: 0700, files 0600; the
sandboxed services run as other users and cannot read it) holding ``meta.json`` and at most two
segments, each named by the offset of its first byte in the deployment's output stream. When
the newer segment is full the older one is deleted and a new one begun, so a log never holds
more than ``--log-bytes`` and always at least half of that of its latest output. The pump
(:mod:`dynasoar.host.logpump`) writes; readers take a chunk from an offset (following) or the
last lines (a tail); offsets survive rotation (see :mod:`dynasoar.logs`).

Logs of deployments that failed, were undeployed or died are kept: the last ``--kept-logs``
per service (and :data:`KEPT_IN_ALL` in all); a log found from a previous run is kept as
``lost``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import threading
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from dynasoar.errors import InvalidRequest
from dynasoar.host.logpump import LogPump
from dynasoar.logs import LogChunk, xml_text

log = logging.getLogger(__name__)

SUFFIX = ".log"
META = "meta.json"
#: ended logs kept across all services, whatever --kept-logs says
KEPT_IN_ALL = 256
MIN_BYTES = 8 << 10
RELEASE_SECONDS = 5.0
ENDED = frozenset({"failed", "undeployed", "exited", "lost"})
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class LogLimits:
    bytes_per_deployment: int = 4 << 20  # --log-bytes
    kept_per_service: int = 3  # --kept-logs
    read_bytes: int = 256 << 10  # text of one deployment in one read (a GetLogs reply)


@dataclass(frozen=True)
class LogMeta:
    id: str
    service: str
    version: str
    kind: str
    state: str
    started: datetime
    ended: datetime | None = None
    reason: str = ""

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["started"] = self.started.isoformat()
        data["ended"] = self.ended.isoformat() if self.ended else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> LogMeta:
        ended = data.get("ended")
        return cls(
            id=str(data["id"]),
            service=str(data["service"]),
            version=str(data["version"]),
            kind=str(data["kind"]),
            state=str(data["state"]),
            started=datetime.fromisoformat(str(data["started"])),
            ended=datetime.fromisoformat(str(ended)) if ended else None,
            reason=str(data.get("reason") or ""),
        )


class ServiceLog:
    """One deployment's log. The pump writes it (a :class:`~dynasoar.host.logpump.Sink`); its
    backend attaches pipes to it; readers read it. One lock keeps them apart."""

    def __init__(self, directory: Path, meta: LogMeta, max_bytes: int, pump: LogPump) -> None:
        self.directory = directory
        self._meta = meta
        self._segment_bytes = max(MIN_BYTES, max_bytes) // 2
        self._pump = pump
        self._lock = threading.Lock()
        self._segments: list[tuple[int, Path]] = sorted(
            (int(p.name.removesuffix(SUFFIX)), p)
            for p in directory.glob("*" + SUFFIX)
            if p.name.removesuffix(SUFFIX).isdigit()
        )
        self._end = 0
        if self._segments:
            self._end = self._segments[-1][0] + self._segments[-1][1].stat().st_size
        self._fd: int | None = None
        self._size = 0  # of the segment being written
        self._failed = False

    @property
    def meta(self) -> LogMeta:
        with self._lock:
            return self._meta

    # -- the backend's side ----------------------------------------------------------------------

    def attach(self, fd: int) -> None:
        """Hand the read end of the deployment's output pipe (or console FIFO) to the pump."""
        self._pump.attach(fd, self)

    def drain(self, timeout: float = 2.0) -> None:
        """Make sure what the deployment has written so far is in the log (before a tail)."""
        self._pump.drain(self, timeout)

    def tail_bytes(self, limit: int) -> bytes:
        with self._lock:
            first = self._segments[0][0] if self._segments else self._end
            start = max(first, self._end - limit)
            return self._read(start, self._end)

    # -- the pump's side (a Sink) ----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        with self._lock:
            try:
                while data:
                    if self._fd is None or self._size >= self._segment_bytes:
                        self._rotate()
                    assert self._fd is not None
                    piece = data[: self._segment_bytes - self._size]
                    written = os.write(self._fd, piece)
                    self._size += written
                    self._end += written
                    data = data[written:]
            except OSError as exc:  # a full disk: the output is lost, never the service blocked
                if not self._failed:
                    log.error("cannot write the log of %s: %s", self._meta.id, exc)
                self._failed = True

    def closed(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        path = self.directory / f"{self._end:020d}{SUFFIX}"
        new = not self._segments or self._segments[-1][1] != path
        # The oldest goes before the new one is made: never more than two on disk, even for
        # a moment (someone may be looking).
        while new and len(self._segments) >= 2:
            _, oldest = self._segments.pop(0)
            with contextlib.suppress(FileNotFoundError):
                oldest.unlink()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size
        if new:
            self._segments.append((self._end, path))

    # -- readers ---------------------------------------------------------------------------------

    def chunk(self, limit: int, *, cursor: int | None = None, tail: int | None = None) -> LogChunk:
        """From ``cursor`` on (complete lines when there are any), or the last ``tail`` lines,
        or (neither) from the oldest byte kept; at most ``limit`` bytes of text."""
        with self._lock:
            first = self._segments[0][0] if self._segments else self._end
            end = self._end
            if cursor is None and tail is not None:
                start, data = self._tail(first, end, tail, limit)
            else:
                wanted = first if cursor is None else cursor
                start = min(max(wanted, first), end)
                data = self._read(start, min(end, start + limit))
                if start > wanted or (cursor is None and start > 0):
                    start, data = _from_a_line(start, data)  # rotation cut in mid-line
                if start + len(data) < end or self._fd is not None:
                    data = _whole_lines(data)
            meta = self._meta
        return LogChunk(
            deployment=meta.id,
            service=meta.service,
            state=meta.state,
            started=meta.started,
            ended=meta.ended,
            reason=meta.reason,
            first=first,
            start=start,
            next=start + len(data),
            end=end,
            text=xml_text(data),
        )

    def _tail(self, first: int, end: int, lines: int, limit: int) -> tuple[int, bytes]:
        if lines <= 0:
            return end, b""
        low = max(first, end - limit)
        data = self._read(low, end)
        body = data[:-1] if data.endswith(b"\n") else data
        cut = len(body)
        for _ in range(lines):
            cut = body.rfind(b"\n", 0, cut)
            if cut < 0:
                break
        if cut >= 0:  # found the line before the tail's first line
            return low + cut + 1, data[cut + 1 :]
        if low > 0:  # capped by limit, or by rotation: start with a whole line
            return _from_a_line(low, data)
        return low, data

    def _read(self, start: int, stop: int) -> bytes:
        """Bytes ``start`` .. ``stop`` of the stream, from the segments holding them."""
        parts = []
        for number, (offset, path) in enumerate(self._segments):
            following = self._segments[number + 1][0] if number + 1 < len(self._segments) else None
            if following is not None and following <= start:
                continue
            if offset >= stop:
                break
            try:
                with path.open("rb") as f:
                    f.seek(max(0, start - offset))
                    parts.append(f.read(stop - max(start, offset)))
            except FileNotFoundError:
                continue
        return b"".join(parts)

    # -- its life --------------------------------------------------------------------------------

    def set_meta(self, meta: LogMeta) -> None:
        with self._lock:
            self._meta = meta
            _write_meta(self.directory, meta)

    def release(self) -> None:
        """The deployment is gone: what its pipes still hold goes in, then they are closed."""
        if not self._pump.release(self, RELEASE_SECONDS):
            log.warning("the output of %s did not drain in time", self._meta.id)


class LogStore:
    def __init__(self, directory: Path, limits: LogLimits, pump: LogPump) -> None:
        self.directory = directory
        self.limits = limits
        self._pump = pump
        self._lock = threading.Lock()
        self._logs: dict[str, ServiceLog] = {}
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        self._load()

    def _load(self) -> None:
        """Logs a previous run left: kept (those still running then are ``lost``)."""
        now = datetime.now(UTC)
        for entry in sorted(self.directory.iterdir()):
            try:
                meta = LogMeta.from_json(json.loads((entry / META).read_text()))
            except (OSError, ValueError, KeyError, TypeError):
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
                continue
            if meta.state not in ENDED:
                meta = replace(meta, state="lost", ended=now, reason="the host stopped")
                _write_meta(entry, meta)
            self._logs[meta.id] = self._open(entry, meta)
        self._prune()

    def _open(self, directory: Path, meta: LogMeta) -> ServiceLog:
        return ServiceLog(directory, meta, self.limits.bytes_per_deployment, self._pump)

    def open(self, deployment_id: str, service: str, version: str, kind: str) -> ServiceLog:
        """A new deployment's log, ``starting``."""
        if not _ID.match(deployment_id):  # it names a directory
            raise InvalidRequest(f"unusable deployment id {deployment_id!r}")
        directory = self.directory / deployment_id
        directory.mkdir(mode=0o700)
        meta = LogMeta(deployment_id, service, version, kind, "starting", datetime.now(UTC))
        _write_meta(directory, meta)
        opened = self._open(directory, meta)
        with self._lock:
            self._logs[deployment_id] = opened
        return opened

    def get(self, deployment_id: str) -> ServiceLog | None:
        with self._lock:
            return self._logs.get(deployment_id)

    def running(self, deployment_id: str) -> None:
        found = self.get(deployment_id)
        if found is not None:
            found.set_meta(replace(found.meta, state="running"))

    def ended(self, deployment_id: str, state: str, reason: str = "") -> None:
        """The deployment is over (``failed``, ``undeployed``, ``exited``): its log is closed
        and kept; older ended logs of its service beyond the limit go."""
        assert state in ENDED, state
        found = self.get(deployment_id)
        if found is None:
            return
        found.release()
        found.set_meta(
            replace(found.meta, state=state, ended=datetime.now(UTC), reason=reason[:2000])
        )
        self._prune()

    def read(
        self,
        service: str,
        deployment: str | None = None,
        tail: int | None = None,
        cursors: dict[str, int] | None = None,
    ) -> list[LogChunk]:
        """The service's logs (one deployment's, if named), oldest deployment first."""
        with self._lock:
            logs = [
                found
                for found in self._logs.values()
                if found.meta.service == service and deployment in (None, found.meta.id)
            ]
        logs.sort(key=lambda found: found.meta.started)
        cursors = cursors or {}
        return [
            found.chunk(self.limits.read_bytes, cursor=cursors.get(found.meta.id), tail=tail)
            for found in logs
        ]

    def _prune(self) -> None:
        with self._lock:
            ended = sorted(
                (found for found in self._logs.values() if found.meta.state in ENDED),
                key=lambda found: found.meta.ended or found.meta.started,
                reverse=True,
            )
            doomed: list[ServiceLog] = []
            per_service: dict[str, int] = {}
            for number, found in enumerate(ended):
                kept = per_service.get(found.meta.service, 0)
                if kept >= self.limits.kept_per_service or number >= KEPT_IN_ALL:
                    doomed.append(found)
                else:
                    per_service[found.meta.service] = kept + 1
            for found in doomed:
                del self._logs[found.meta.id]
        for found in doomed:
            shutil.rmtree(found.directory, ignore_errors=True)


def _write_meta(directory: Path, meta: LogMeta) -> None:
    temporary = directory / (META + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(meta.to_json(), f)
    temporary.replace(directory / META)


def _whole_lines(data: bytes) -> bytes:
    """Cut after the last newline, if any (the rest comes with the next read); else at a
    character boundary."""
    newline = data.rfind(b"\n")
    if newline >= 0:
        return data[: newline + 1]
    return _char_boundary(data)


def _char_boundary(data: bytes) -> bytes:
    """Without a UTF-8 sequence cut short at the end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return data
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if back >= need else data[:-back]
    return data


def _from_a_line(start: int, data: bytes) -> tuple[int, bytes]:
    """From the first whole line of a window that may begin mid-line (if it has a newline
    before its last byte), else from its first whole character."""
    newline = data.find(b"\n")
    if 0 <= newline < len(data) - 1:
        return start + newline + 1, data[newline + 1 :]
    return _skip_continuation(start, data)


def _skip_continuation(start: int, data: bytes) -> tuple[int, bytes]:
    """Without UTF-8 continuation bytes at the start (a window that began mid-character)."""
    skip = 0
    while skip < min(3, len(data)) and 0x80 <= data[skip] < 0xC0:
        skip += 1
    return start + skip, data[skip:]
