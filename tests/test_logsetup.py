"""Log lines as an operator reads them: ``key=value`` text that nobody can forge lines or
fields into, or one JSON object per line; access lines are never lost, even those made in the
last turn of an event loop before the process ends."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from dynasoar import logsetup
from dynasoar.logsetup import ACCESS_LOGGER, access, configure, logfmt


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """configure() sets up the process's logging: put back what pytest had."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ("dynasoar", *logsetup.LIBRARIES)
    levels = {name: logging.getLogger(name).level for name in names}
    sink = logsetup._sink
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, was in levels.items():
        logging.getLogger(name).setLevel(was)
    logsetup._sink = sink


class Line:
    def __init__(self, **fields: object) -> None:
        self._fields = fields

    def __str__(self) -> str:
        return " ".join(f"{k}={logfmt(v)}" for k, v in self._fields.items())

    def fields(self) -> dict[str, object]:
        return dict(self._fields)


def test_values_are_plain_or_quoted_never_raw() -> None:
    assert logfmt("urn:uuid:6f1c4a1e") == "urn:uuid:6f1c4a1e"
    assert logfmt(None) == "-"
    assert logfmt(True) == "1"
    assert logfmt(3) == "3"
    assert logfmt(1.23456) == "1.235"
    assert logfmt('a b"c') == '"a b\\"c"'
    assert logfmt("x\nINFO forged=1") == '"x\\nINFO forged=1"'
    assert logfmt("k=v") == '"k=v"'
    assert logfmt("") == '""'
    assert logfmt("é") == '"\\u00e9"'
    long = logfmt("x" * 1000)
    assert len(long) < 250 and long.endswith("x...")


def test_text_and_json_lines() -> None:
    out = io.StringIO()
    configure(stream=out)
    access(logging.getLogger(ACCESS_LOGGER), Line(id="m\n1", service="Echo", status=200))
    logging.getLogger("dynasoar.test").warning("host %s is down", "h1")
    text = out.getvalue().splitlines()
    assert len(text) == 2
    assert text[0].endswith(' INFO dynasoar.access: id="m\\n1" service=Echo status=200')
    assert text[1].endswith(" WARNING dynasoar.test: host h1 is down")

    out = io.StringIO()
    configure(log_format="json", stream=out)
    access(logging.getLogger(ACCESS_LOGGER), Line(id="m\n1", service="Echo", status=200))
    logging.getLogger("dynasoar.test").info("plain")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["logger"] == "dynasoar.access" and first["level"] == "info"
    assert (first["id"], first["service"], first["status"]) == ("m\n1", "Echo", 200)
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert second == {**second, "logger": "dynasoar.test", "level": "info", "message": "plain"}


def test_levels_and_the_libraries() -> None:
    out = io.StringIO()
    configure(level="warning", stream=out)
    access(logging.getLogger(ACCESS_LOGGER), Line(id="x"))
    logging.getLogger("dynasoar.x").info("not shown")
    logging.getLogger("spyne.interface").info("not shown either")
    assert out.getvalue() == ""
    configure(verbose=1, stream=out)
    logging.getLogger("dynasoar.x").debug("shown")
    logging.getLogger("zeep.wsdl").debug("still not")
    assert "shown" in out.getvalue() and "still not" not in out.getvalue()
    configure(verbose=2, stream=out)
    logging.getLogger("zeep.wsdl").debug("now")
    assert "DEBUG zeep.wsdl: now" in out.getvalue()


def test_access_lines_made_on_a_loop_are_written_once_per_turn() -> None:
    out = io.StringIO()
    configure(stream=out)
    log = logging.getLogger(ACCESS_LOGGER)

    async def burst() -> str:
        for n in range(5):
            access(log, Line(n=n))
        before = out.getvalue()
        await asyncio.sleep(0)
        return before

    assert asyncio.run(burst()) == ""  # gathered ...
    assert [line.rpartition(" ")[2] for line in out.getvalue().splitlines()] == [
        f"n={n}" for n in range(5)
    ]  # ... and written, in order


def test_access_lines_coming_faster_than_one_write_each_are_gathered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first line after a quiet spell goes out at the end of its turn; the lines right
    after it wait for the next write (GATHER_SECONDS later, or whenever logging flushes), and
    go out together, in order."""
    writes: list[str] = []

    class Stream(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return super().write(text)

    out = Stream()
    configure(stream=out)
    monkeypatch.setattr(logsetup, "GATHER_SECONDS", 3600.0)  # no write comes by the clock
    log = logging.getLogger(ACCESS_LOGGER)

    async def lines() -> list[str]:
        access(log, Line(n=0))
        await asyncio.sleep(0)
        seen = [out.getvalue()]
        for n in (1, 2):
            access(log, Line(n=n))
            await asyncio.sleep(0)
            seen.append(out.getvalue())
        return seen

    after_0, after_1, after_2 = asyncio.run(lines())
    assert after_0.endswith(" n=0\n") and after_1 == after_2 == after_0
    logging.getLogger().handlers[0].flush()  # as logging does at exit
    assert [line.rpartition(" ")[2] for line in out.getvalue().splitlines()] == [
        "n=0",
        "n=1",
        "n=2",
    ]
    assert len(writes) == 2  # n=1 and n=2 in one write


def test_pending_access_lines_are_written_when_the_process_ends() -> None:
    program = (
        "import asyncio, logging\n"
        "from dynasoar import logsetup\n"
        "logsetup.configure()\n"
        "class L:\n"
        "    def __str__(self): return 'last=1'\n"
        "    def fields(self): return {'last': 1}\n"
        "async def main():\n"
        "    logsetup.access(logging.getLogger('dynasoar.access'), L())\n"
        "loop = asyncio.new_event_loop()\n"
        "loop.run_until_complete(main())\n"  # the flush was scheduled, never run
        "loop.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith("INFO dynasoar.access: last=1")
    assert logsetup.ACCESS_LOGGER == "dynasoar.access"
