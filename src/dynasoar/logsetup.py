"""How a dynasoar process writes its log: one line per event on stderr (journald, a file, a
terminal), as text or as one JSON object per line, with levels that mean something:

    error    the actor itself is in trouble (a bug, a store it cannot write)
    warning  something went wrong that an operator may act on (a host down, a deployment lost)
    info     what happened: one access line per message, hosts up/down, deployments
    debug    details (-v); -vv adds the libraries' own loggers (spyne, zeep, urllib3, ...)

A consumer's mistake is the consumer's: its access line says which fault it got, at info.

Access lines (logger ``dynasoar.access``) have fields: the text format writes them as
``key=value`` pairs (values that need it quoted, consumer-given text escaped and cut short),
the JSON format as keys of the line's object.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, Protocol, TextIO

ACCESS_LOGGER = "dynasoar.access"
#: Access lines made less than this long after the last write wait for the next one, at most
#: this long: under load one write per turn of the loop is a system call per message.
GATHER_SECONDS = 0.02
#: Consumer-given text (message ids, service names from a URL) is cut to this many characters.
MAX_FIELD = 200


class AccessLine(Protocol):
    """One access line: its text (``key=value`` pairs) and its fields (for JSON)."""

    def __str__(self) -> str: ...

    def fields(self) -> dict[str, object]: ...


class _Handler(logging.StreamHandler[TextIO]):
    """The log's stream, with access lines waiting to be written (see :class:`_Sink`): they go
    out before any other line, and whenever logging flushes (at exit, before a re-exec)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.pending: list[str] = []
        #: When pending lines were last written (time.monotonic()); never, at first. (Not 0:
        #: the monotonic clock counts from boot, so a machine up for less than the gathering
        #: time would hold the first line back.)
        self.written_at = -math.inf

    def emit(self, record: logging.LogRecord) -> None:
        if self.pending:
            self.flush()
        super().emit(record)

    def flush(self) -> None:
        self.acquire()
        try:
            if self.pending:
                text = "\n".join(self.pending) + "\n"
                self.pending.clear()
                self.written_at = time.monotonic()
                try:
                    self.stream.write(text)
                except (OSError, ValueError):  # nobody reads the log any more
                    pass
            super().flush()
        except (OSError, ValueError):
            pass
        finally:
            self.release()


class _Sink:
    """Access lines written straight to the log's stream, formatted as its other lines are:
    making a logging.LogRecord per message would cost more than the rest of the line. Lines
    made on an event loop are gathered and written at the end of the loop's turn (one write
    for all the messages answered in that turn); when lines come faster than one write every
    GATHER_SECONDS, the next write waits until then (one write for all the lines made
    meanwhile), so none waits longer than that."""

    def __init__(self, handler: _Handler, json_lines: bool) -> None:
        self.handler = handler
        self.json_lines = json_lines

    def write(self, line: AccessLine, level: int) -> None:
        now = time.time()
        if self.json_lines:
            entry: dict[str, object] = {
                "time": iso_time(now),
                "level": logging.getLevelName(level).lower(),
                "logger": ACCESS_LOGGER,
                "message": "access",
            }
            for key, value in line.fields().items():
                entry.setdefault(key, _json_value(value))
            text = json.dumps(entry, ensure_ascii=False, default=str)
        else:
            text = f"{iso_time(now)} {logging.getLevelName(level)} {ACCESS_LOGGER}: {line}"
        handler = self.handler
        assert handler.lock is not None
        with handler.lock:  # other threads' lines flush the pending ones
            handler.pending.append(text)
            first = len(handler.pending) == 1
        if first:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on an event loop: now
                self.handler.flush()
                return
            wait = handler.written_at + GATHER_SECONDS - time.monotonic()
            if wait > 0:
                loop.call_later(wait, handler.flush)
            else:
                loop.call_soon(handler.flush)


_sink: _Sink | None = None


def access(logger: logging.Logger, line: AccessLine, level: int = logging.INFO) -> None:
    """Write one access line (cheaply skipped when the level is off)."""
    if not logger.isEnabledFor(level):
        return
    if _sink is not None:
        _sink.write(line, level)
    else:  # logging set up by someone else (a test, an embedding program)
        logger.log(level, "%s", line, extra={"fields": line.fields()})


#: Text that needs no quoting: printable ASCII but for space, quote, '=' and backslash.
_PLAIN = re.compile(r"[!#-<>-\[\]-~]+")


def logfmt(value: object) -> str:
    """A value as ``key=value`` text: plain when it can be, else quoted with escapes (so that a
    consumer cannot forge lines or fields with spaces, quotes or newlines)."""
    if value is None:
        return "-"
    if value is True or value is False:
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    if len(text) > MAX_FIELD:
        text = text[:MAX_FIELD] + "..."
    if _PLAIN.fullmatch(text):
        return text
    return json.dumps(text, ensure_ascii=True)


_second: list[object] = [-1, ""]  # the last second formatted, and how


def iso_time(created: float) -> str:
    """A record's time as ISO 8601 in UTC, to the millisecond."""
    seconds = int(created)
    if _second[0] != seconds:
        _second[:] = [seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))]
    return f"{_second[1]}.{int((created - seconds) * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{iso_time(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and an access line's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                entry.setdefault(key, _json_value(value))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _json_value(value: object) -> object:
    if isinstance(value, str) and len(value) > MAX_FIELD:
        return value[:MAX_FIELD] + "..."
    if isinstance(value, float):
        return round(value, 3)
    return value


#: The libraries' loggers: quiet (warnings only) unless -vv.
LIBRARIES = ("spyne", "zeep", "urllib3", "requests", "asyncio", "libvirt", "selenium")


def configure(
    level: str = "info", log_format: str = "text", verbose: int = 0, stream: TextIO | None = None
) -> None:
    """Set up the process's logging (replacing whatever was set up before)."""
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        old.flush()
        root.removeHandler(old)
    root.addHandler(handler)
    # Everyone's warnings; the libraries' chatter only when asked for twice.
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose >= 2 else logging.WARNING)
    ours = logging.DEBUG if verbose >= 1 else logging.getLevelName(level.upper())
    logging.getLogger("dynasoar").setLevel(ours)
    global _sink
    _sink = _Sink(handler, log_format == "json")
