"""Errors of a deployed code package, told in the package's own terms: the frames of a traceback
that lie inside the package (paths relative to it), a SyntaxError's file, line and text, and
the exception's message, with every path outside the package taken out.

The runner uses it for a package that cannot start (the report goes to the Host Provider, and
from there into the fault the consumer or publisher reads) and for exceptions it logs while
serving (the log goes to the service's owner). Neither names the host's own files.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path

MAX_FRAMES = 8
MAX_CHARS = 4000
HIDDEN = "…"

# An absolute path (two or more components) not preceded by what would make it part of a word
# or a URL.
_ABSOLUTE = re.compile(r"(?<![\w:/.~-])/(?:[^\s/'\"():,]+/)+[^\s/'\"():,]*")


def inside(path: str, root: Path) -> str | None:
    """``path`` relative to ``root`` if it lies inside it, else None (``<frozen ...>`` and
    other names that are no file's are not inside)."""
    if not Path(path).is_absolute():
        return None
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except (ValueError, OSError):
        return None


def scrub(text: str, root: Path) -> str:
    """``text`` with paths inside ``root`` made relative and every other absolute path hidden."""
    for prefix in {str(root.resolve()), str(root)}:
        text = text.replace(prefix.rstrip("/") + "/", "")
    return _ABSOLUTE.sub(HIDDEN, text)


def describe(exc: BaseException, root: Path) -> str:
    """A traceback of ``exc`` that shows only the package (``root``): its frames, the place of
    a syntax error, the exception's type and message."""
    lines = []
    frames = [
        (relative, frame)
        for frame in traceback.extract_tb(exc.__traceback__)
        if (relative := inside(frame.filename, root)) is not None
    ]
    if frames:
        lines.append("Traceback (the package's frames, most recent call last):")
        for relative, frame in frames[-MAX_FRAMES:]:
            lines.append(f'  File "{relative}", line {frame.lineno}, in {frame.name}')
            if frame.line:
                lines.append(f"    {frame.line.strip()}")
    if isinstance(exc, SyntaxError):
        lines += _syntax_error_place(exc, root)
    message = scrub(_message(exc), root)
    lines.append(f"{_type_name(exc)}: {message}" if message else _type_name(exc))
    text = "\n".join(lines)
    return text if len(text) <= MAX_CHARS else HIDDEN + text[-MAX_CHARS:]


def _syntax_error_place(exc: SyntaxError, root: Path) -> list[str]:
    relative = inside(exc.filename, root) if exc.filename else None
    if relative is None:
        return []
    place = [f'  File "{relative}", line {exc.lineno}']
    if exc.text:
        code = exc.text.rstrip("\n")
        stripped = code.lstrip()
        place.append(f"    {stripped}")
        if exc.offset:
            column = max(0, exc.offset - 1 - (len(code) - len(stripped)))
            place.append("    " + " " * column + "^")
    return place


def _message(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return exc.msg or ""
    return str(exc)


def _type_name(exc: BaseException) -> str:
    kind = type(exc)
    module = kind.__module__
    return (
        kind.__qualname__ if module in ("builtins", "__main__") else f"{module}.{kind.__qualname__}"
    )
