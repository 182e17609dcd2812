"""Configuration of a server process the way daemons are configured: every option of
``dynasoar sp`` and ``dynasoar hp`` has a flag, a key in a TOML file (``--config FILE``, in a
section: ``[server] port = 8080``) and an environment variable (``DYNASOAR_PORT``). The
effective value of each comes from the first that sets it:

    flag  >  environment  >  config file  >  default

:func:`resolve` fills an argparse namespace that way and says where each value came from;
:func:`render` writes the effective configuration back as TOML (``--print-config``), which
loads again as a config file.
"""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynasoar.serve import StartupError

ENV_PREFIX = "DYNASOAR_"
#: The config file may also be named in the environment.
CONFIG_ENV = "DYNASOAR_CONFIG"
#: A config file is small; a bigger one is a mistake (a log named by accident).
MAX_CONFIG_BYTES = 1 << 20


@dataclass(frozen=True)
class Option:
    """One setting of a server process. ``name`` is its flag (``--name``) and its key in its
    ``section`` of the config file; ``parse`` turns a flag's or variable's text into the value
    (raising ValueError or argparse.ArgumentTypeError with a reason); ``show`` turns a value
    back into what the config file would say."""

    name: str
    section: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    #: A list: the flag repeats, the variable separates items with commas, the file has an array.
    repeat: bool = False
    #: A flag taking no value (true when given); the variable and the file say true or false.
    switch: bool = False
    #: A flag counted (-v, -vv); the variable and the file give the number.
    count: bool = False
    short: str | None = None
    #: A path: relative paths in a config file are relative to the file's directory.
    path: bool = False
    show: Callable[[Any], Any] | None = None
    #: Its key in its section, when not its flag's name (``[log] level`` for --log-level).
    file_key: str | None = None

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper().replace("-", "_")

    @property
    def key(self) -> str:
        """Its key in the config file's section."""
        return self.file_key or self.name


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """The options as flags, plus ``--config`` and ``--print-config``. Flags default to
    nothing at all (argparse.SUPPRESS), so that :func:`resolve` can tell a flag given."""
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"read settings from this TOML file (or ${CONFIG_ENV}); flags and environment "
        "variables win over it",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration as TOML, each value with where it came from "
        "(flag, environment, file, default), and exit",
    )
    for option in options:
        flags = [*([option.short] if option.short else []), f"--{option.name}"]
        where = f"${option.env}, [{option.section}] {option.key}"
        shown = _shown_default(option)
        suffix = f" (default: {shown}; {where})" if shown else f" ({where})"
        common: dict[str, Any] = {
            "dest": option.dest,
            "default": argparse.SUPPRESS,
            "help": option.help + suffix,
        }
        if option.switch:
            parser.add_argument(*flags, action="store_true", **common)
        elif option.count:
            parser.add_argument(*flags, action="count", **common)
        else:
            parser.add_argument(
                *flags,
                type=option.parse,
                metavar=option.metavar,
                choices=option.choices,
                action="append" if option.repeat else "store",
                **common,
            )


def resolve(
    args: argparse.Namespace,
    options: Sequence[Option],
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Fill ``args`` with every option's effective value; returns where each came from
    (``--flag``, ``$VARIABLE``, the file's path, or ``default``), by option name."""
    env = os.environ if environ is None else environ
    config_path: Path | None = getattr(args, "config", None)
    if config_path is None and env.get(CONFIG_ENV):
        config_path = Path(env[CONFIG_ENV])
    args.config = config_path
    from_file = load_file(config_path, options) if config_path is not None else {}
    sources: dict[str, str] = {}
    for option in options:
        if hasattr(args, option.dest):
            sources[option.name] = f"--{option.name}"
        elif env.get(option.env, "") != "":
            setattr(args, option.dest, _from_env(option, env[option.env]))
            sources[option.name] = f"${option.env}"
        elif option.name in from_file:
            setattr(args, option.dest, from_file[option.name])
            sources[option.name] = str(config_path)
        else:
            default = option.default
            setattr(args, option.dest, list(default) if isinstance(default, list) else default)
            sources[option.name] = "default"
    return sources


def load_file(path: Path, options: Sequence[Option]) -> dict[str, Any]:
    """The values a config file sets, by option name (StartupError for any mistake in it)."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise StartupError(f"--config {path}: cannot read it ({exc.strerror})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise StartupError(f"--config {path}: over {MAX_CONFIG_BYTES >> 10} KiB; not a config")
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise StartupError(f"--config {path}: not valid TOML: {exc}") from None
    by_key = {(o.section, o.key): o for o in options}
    sections = sorted({o.section for o in options})
    values: dict[str, Any] = {}
    for section, body in table.items():
        if not isinstance(body, dict):
            raise StartupError(
                f"--config {path}: {section} = ... is outside any section; settings go in "
                f"the sections {', '.join(f'[{s}]' for s in sections)}"
            )
        for name, value in body.items():
            option = by_key.get((section, name))
            if option is None:
                raise StartupError(f"--config {path}: {_unknown(section, name, options)}")
            try:
                values[option.name] = _from_file(option, value, path.parent)
            except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
                raise StartupError(f"--config {path}: [{section}] {name}: {exc}") from None
    return values


def render(
    command: str, args: argparse.Namespace, options: Sequence[Option], sources: dict[str, str]
) -> str:
    """The effective configuration as TOML that loads again as a config file."""
    lines = [
        f"# The effective configuration of dynasoar {command}.",
        "# Each value comes from the first of: flag, environment variable, config file, default.",
    ]
    for section in dict.fromkeys(o.section for o in options):
        lines += ["", f"[{section}]"]
        for option in (o for o in options if o.section == section):
            value = getattr(args, option.dest)
            source = sources[option.name]
            if value is None or (option.repeat and not value):
                lines.append(f"# {option.key} = (not set)".ljust(40) + f"  # {source}")
                continue
            text = f"{option.key} = {_toml(_show(option, value))}"
            lines.append(text.ljust(40) + f"  # {source}")
    return "\n".join(lines) + "\n"


# -- conversions -------------------------------------------------------------------------------

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})


def _from_env(option: Option, text: str) -> Any:
    try:
        if option.switch:
            return _boolean(text)
        if option.count:
            return _count(text)
        if option.repeat:
            return [_one(option, item.strip()) for item in text.split(",") if item.strip()]
        return _one(option, text)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise StartupError(f"${option.env}={text!r}: {exc}") from None


def _from_file(option: Option, value: Any, base: Path) -> Any:
    if option.switch:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, not {value!r}")
        return value
    if option.count:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"expected a count (0, 1, 2), not {value!r}")
        return value
    if option.repeat:
        items = value if isinstance(value, list) else [value]
        return [_one_from_file(option, item, base) for item in items]
    return _one_from_file(option, value, base)


def _one_from_file(option: Option, value: Any, base: Path) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected {_kind(option)}, not {value!r}")
    if option.path:
        if not isinstance(value, str):
            raise ValueError(f"expected a path (a string), not {value!r}")
        return _one(option, str(base / Path(value).expanduser()))
    return _one(option, str(value))


def _one(option: Option, text: str) -> Any:
    if option.choices is not None and text not in option.choices:
        raise ValueError(f"choose one of {', '.join(option.choices)}, not {text!r}")
    try:
        return option.parse(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(str(exc)) from None
    except ValueError:
        raise ValueError(f"expected {_kind(option)}, not {text!r}") from None


def _kind(option: Option) -> str:
    if option.parse is int:
        return "an integer"
    if option.parse is float:
        return "a number"
    return option.metavar or "a string"


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise ValueError("expected true or false (1/0, yes/no, on/off)")


def _count(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError("expected a count (0, 1, 2)")
    return int(text)


def _show(option: Option, value: Any) -> Any:
    if option.repeat:
        return [_show_one(option, v) for v in value]
    return _show_one(option, value)


def _show_one(option: Option, value: Any) -> Any:
    if option.show is not None:
        return option.show(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _shown_default(option: Option) -> str:
    default = option.default
    if option.switch or option.count or default is None or default == []:
        return ""
    return str(_toml(_show(option, default)) if option.repeat else _show_one(option, default))


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


def _unknown(section: str, name: str, options: Sequence[Option]) -> str:
    elsewhere = [o for o in options if o.key == name]
    if elsewhere:
        return f"{name} belongs in [{elsewhere[0].section}], not [{section}]"
    known = ", ".join(o.key for o in options if o.section == section)
    if known:
        return f"no setting [{section}] {name}; [{section}] has {known}"
    sections = ", ".join(f"[{s}]" for s in dict.fromkeys(o.section for o in options))
    return f"no section [{section}]; the sections are {sections}"
