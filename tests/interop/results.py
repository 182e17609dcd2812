"""The interop matrix as the suite measures it: stack-by-column cells, written to
``build/interop/results.json`` at the end of the run; ``scripts/interop-matrix.py`` turns that
file into the README's table. A cell passes only when every check recorded for it passed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS_FILE = ROOT / "build" / "interop" / "results.json"

COLUMNS = ("SOAP 1.1", "SOAP 1.2", "WS-A", "Faults", "MTOM")
#: Row order in the matrix.
STACKS = ("zeep", "suds-community", "node soap", "gSOAP")

PASS, FAIL, UNSUPPORTED = "pass", "fail", "n/a"


class Results:
    def __init__(self) -> None:
        self.cells: dict[str, dict[str, dict[str, str]]] = {}
        self.versions: dict[str, str] = {}
        self.notes: dict[str, list[str]] = {}

    def _set(self, stack: str, column: str, status: str, note: str = "") -> None:
        assert column in COLUMNS, column
        assert stack in STACKS, stack
        row = self.cells.setdefault(stack, {})
        current = row.get(column)
        if current is not None and current["status"] == FAIL:
            return  # one failed check fails the cell
        if current is not None and current["status"] == PASS and status == UNSUPPORTED:
            return
        row[column] = {"status": status, "note": note or (current or {}).get("note", "")}

    @contextmanager
    def cell(self, stack: str, column: str, note: str = "") -> Iterator[None]:
        """Checks for one cell: it passes if the block returns, fails if it raises."""
        try:
            yield
        except BaseException:
            self._set(stack, column, FAIL, note)
            raise
        self._set(stack, column, PASS, note)

    def unsupported(self, stack: str, column: str, why: str) -> None:
        self._set(stack, column, UNSUPPORTED, why)

    def version(self, stack: str, version: str) -> None:
        self.versions[stack] = version

    def note(self, stack: str, text: str) -> None:
        notes = self.notes.setdefault(stack, [])
        if text not in notes:
            notes.append(text)

    def write(self, path: Path = RESULTS_FILE, seconds: float | None = None) -> None:
        if not self.cells:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "columns": list(COLUMNS),
            "stacks": [s for s in STACKS if s in self.cells],
            "cells": self.cells,
            "versions": self.versions,
            "notes": self.notes,
            "generated": time.strftime("%Y-%m-%d", time.gmtime()),
            "seconds": None if seconds is None else round(seconds, 1),
        }
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
