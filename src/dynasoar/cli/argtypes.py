"""The kinds of values options take (sizes, durations, counts, URLs, sites, labels): each parses
a flag's, an environment variable's or a config file's text, or says in one line what is wrong,
and the kinds that print differently from how they are written say how they print."""

from __future__ import annotations

import argparse
import math

SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def size_arg(text: str) -> int:
    """A size such as 512M, 20G or 1048576 (bytes)."""
    cleaned = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        if cleaned and cleaned[-1] in SIZE_UNITS:
            value = int(float(cleaned[:-1]) * SIZE_UNITS[cleaned[-1]])
        else:
            value = int(cleaned)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (say 512M, 20G, ...)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (a size is not negative)")
    return value


def show_size(value: int) -> str | int:
    """A size as it would be written: 64G rather than 68719476736."""
    for unit, factor in sorted(SIZE_UNITS.items(), key=lambda u: -u[1]):
        if value and value % factor == 0:
            return f"{value // factor}{unit}"
    return value


def log_size(text: str) -> int:
    size = size_arg(text)
    if size < 8 << 10:
        raise argparse.ArgumentTypeError(f"{text!r} is too small for a log (at least 8K)")
    return size


def count(text: str) -> int:
    """A whole number, 0 or more."""
    try:
        number = int(text)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"not a count: {text!r} (0, 1, 2, ...)")
    return number


def positive_int(text: str) -> int:
    number = count(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: at least 1")
    return number


def seconds(text: str) -> float:
    """A duration in seconds, more than 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (seconds, more than 0)")
    return value


def positive(text: str) -> float:
    """A number, more than 0."""
    value = number(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: more than 0")
    return value


def number(text: str) -> float:
    """A number, 0 or more (a price, a load)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"not a number: {text!r} (0 or more)")
    return value


def tcp_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a TCP port: use 0 (any free port) to 65535"
        )
    return port


def url(text: str) -> str:
    """An http:// or https:// URL (of a Service or Host Provider)."""
    value = text.strip().rstrip("/")
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("http", "https") or not rest or any(c in rest for c in " \t"):
        raise argparse.ArgumentTypeError(f"{text!r} is not an http(s) URL (say http://HOST:PORT)")
    return value


def site(text: str) -> tuple[str, int]:
    from dynasoar.terms import parse_site

    try:
        return parse_site(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def show_site(value: tuple[str, int]) -> str:
    return f"{value[0]}={value[1]}"


def label(text: str) -> tuple[str, str]:
    from dynasoar.terms import parse_label

    try:
        return parse_label(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def show_label(value: tuple[str, str]) -> str:
    return f"{value[0]}={value[1]}"


def public_url(text: str) -> str:
    """A URL an actor is reached at (scheme, host, port and path)."""
    from dynasoar.addresses import Base

    try:
        Base.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def sender_status(text: str) -> int:
    """The HTTP status of SOAP 1.2 Sender faults: 400 or 500."""
    if text.strip() not in ("400", "500"):
        raise argparse.ArgumentTypeError(f"{text!r}: 400 or 500")
    return int(text)


def registry_url(text: str) -> str:
    """sqlite:///PATH, or a postgresql:// URL."""
    value = text.strip()
    if value.startswith(("postgresql://", "postgres://")):
        return value
    if value.startswith("sqlite:///") and len(value) > len("sqlite:///"):
        return value
    raise argparse.ArgumentTypeError(
        f"{text!r}: say sqlite:///PATH (an SQLite file) or postgresql://USER@HOST:PORT/DB"
    )
