"""soap/'s modules import one another in one direction only (no cycle, so no import placed at
the bottom of a file to dodge one), and no private name crosses from one module to another."""

from __future__ import annotations

import ast
from pathlib import Path

import dynasoar.soap

SOAP = Path(dynasoar.soap.__file__).parent


def soap_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) for each ``from dynasoar.soap.X import name`` in a file, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dynasoar.soap"):
            out += [(node.module or "", alias.name) for alias in node.names]
    return out


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in SOAP.glob("*.py"):
        me = f"dynasoar.soap.{path.stem}"
        edges[me] = set()
        for module, name in soap_imports(path):
            target = f"{module}.{name}" if module == "dynasoar.soap" else module
            if target != me:
                edges[me].add(target)
    return edges


def test_soap_modules_import_without_a_cycle() -> None:
    edges = graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        assert node not in path, "import cycle: " + " -> ".join([*path, node])
        if node in done:
            return
        for nxt in sorted(edges.get(node, ())):
            visit(nxt, [*path, node])
        done.add(node)

    for module in sorted(edges):
        visit(module, [])


def test_no_private_name_crosses_a_module() -> None:
    crossings = [
        f"{path.name} imports {module}.{name}"
        for path in SOAP.glob("*.py")
        for module, name in soap_imports(path)
        if name.startswith("_")
    ]
    assert not crossings


def test_the_mtom_modules_no_longer_formed_a_cycle() -> None:
    # The reader, the writer and the XOP helpers: xop needs the reader's Attachment; neither
    # the reader nor the writer needs the other.
    edges = graph()
    assert "dynasoar.soap.mtom_writer" not in edges["dynasoar.soap.mtom"]
    assert "dynasoar.soap.xop" not in edges["dynasoar.soap.mtom"]
    assert "dynasoar.soap.mtom" not in edges["dynasoar.soap.mtom_writer"]
