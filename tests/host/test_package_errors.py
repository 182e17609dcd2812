"""A package's errors told in its own terms: real exceptions raised by importing real files
from a package directory, described with only the package's frames and relative paths."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import dynasoar
from dynasoar.host.package_errors import describe, scrub


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "pkg"
    (root / "lib").mkdir(parents=True)
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    for name in [n for n in sys.modules if n.split(".")[0] in ("app_mod", "lib")]:
        del sys.modules[name]


def raised(module: str) -> BaseException:
    try:
        importlib.import_module(module)
    except Exception as exc:
        return exc
    raise AssertionError(f"importing {module} raised nothing")


def test_a_syntax_error_names_file_line_and_code(package: Path) -> None:
    (package / "app_mod.py").write_text("from lib import helpers\n")
    (package / "lib" / "__init__.py").write_text("")
    (package / "lib" / "helpers.py").write_text("import os\n\n\ndef broken(:\n    pass\n")
    text = describe(raised("app_mod"), package)
    assert text.splitlines() == [
        "Traceback (the package's frames, most recent call last):",
        '  File "app_mod.py", line 1, in <module>',
        "    from lib import helpers",
        '  File "lib/helpers.py", line 4',
        "    def broken(:",
        "               ^",
        "SyntaxError: invalid syntax",
    ]


def test_only_the_packages_frames_and_no_host_path(package: Path) -> None:
    (package / "app_mod.py").write_text(
        "import json\n\ndef load():\n    return json.loads('{')\n\nCONFIG = load()\n"
    )
    text = describe(raised("app_mod"), package)
    assert text.splitlines()[1:] == [
        '  File "app_mod.py", line 6, in <module>',
        "    CONFIG = load()",
        '  File "app_mod.py", line 4, in load',
        "    return json.loads('{')",
        "json.decoder.JSONDecodeError: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)",
    ]
    assert "importlib" not in text and "frozen" not in text and sys.prefix not in text


def test_messages_keep_package_paths_relative_and_hide_the_hosts(package: Path) -> None:
    (package / "app_mod.py").write_text(f"open({str(package / 'settings.toml')!r})\n")
    text = describe(raised("app_mod"), package)
    assert text.endswith("FileNotFoundError: [Errno 2] No such file or directory: 'settings.toml'")
    here = str(Path(dynasoar.__file__))
    assert scrub(f"failed at {here} (see http://example.org/a/b)", package) == (
        "failed at … (see http://example.org/a/b)"
    )
