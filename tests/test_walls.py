"""The architecture's walls, read off the imports: the standards (``soap/``) and the transport
(``http/``) know no actor, and the Service Provider (``provider/``) and the Host Provider
(``host/``) import nothing of each other (the SP's client of the HP port is a client:
``consumer/host_client.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dynasoar

PACKAGE = Path(dynasoar.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every ``dynasoar...`` module a file imports, at any depth (lazy imports included)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("dynasoar.")}


def modules_of(package: str) -> list[Path]:
    return sorted((PACKAGE / package).rglob("*.py"))


WALLS = [
    ("provider", ("dynasoar.host",)),
    ("host", ("dynasoar.provider",)),
    ("soap", ("dynasoar.provider", "dynasoar.host", "dynasoar.consumer", "dynasoar.service")),
    ("http", ("dynasoar.provider", "dynasoar.host", "dynasoar.consumer", "dynasoar.soap")),
]


@pytest.mark.parametrize(("package", "forbidden"), WALLS, ids=[w[0] for w in WALLS])
def test_a_package_does_not_import_across_its_wall(
    package: str, forbidden: tuple[str, ...]
) -> None:
    crossings = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in modules_of(package)
        for name in imported_modules(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    }
    assert not crossings, sorted(crossings)


def test_the_check_sees_imports_at_any_depth(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import dynasoar.http\n"
        "def f():\n"
        "    from dynasoar.host.hosting import HostProvider\n"
        "    from . import sibling\n"
    )
    assert imported_modules(module) == {
        "dynasoar.http",
        "dynasoar.host.hosting",
        "dynasoar.host.hosting.HostProvider",
    }
