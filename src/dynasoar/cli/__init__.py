"""The ``dynasoar`` command: run the actors (``sp``, ``hp``: :mod:`.servers`) and act as their
consumer (``publish``, ``deploy``, ``undeploy``, ``status``, ``logs``, ``call``: :mod:`.clients`),
plus ``keys``, ``demo`` and ``bench``.

Every mistake is one line on stderr: a server that cannot start (bad setting, port in use,
unreadable key, libvirt unreachable ...) exits with status 2, as do mistakes on the command
line; a client whose request failed exits with 1."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Callable

from dynasoar import __version__
from dynasoar.cli.argtypes import size_arg
from dynasoar.cli.clients import SP_ENV, add_client_parsers, sp_default
from dynasoar.cli.owners import COMMANDS as OWNER_COMMANDS
from dynasoar.cli.servers import add_server_parsers, prepare
from dynasoar.errors import DynasoarError, Unreachable
from dynasoar.serve import StartupError

__all__ = ["main", "size_arg"]

DESCRIPTION = """\
Dynamic deployment and hosting of SOAP services. A Service Provider (sp) advertises services
and, when a service's first message arrives, deploys it on a Host Provider (hp) and relays
every message to it; consumers only ever see the Service Provider."""

EPILOG = f"""\
examples:
  dynasoar sp --port 8080 --data /var/lib/dynasoar/sp &
  dynasoar hp --sp http://127.0.0.1:8080 &
  export {SP_ENV}=http://127.0.0.1:8080
  dynasoar publish deploy/services/echo
  dynasoar call http://127.0.0.1:8080/services/Echo?wsdl Echo text=hello
  dynasoar status

'dynasoar COMMAND --help' tells a command's options and examples. The client commands talk to
${SP_ENV} (default http://127.0.0.1:8080) unless given --sp; sp and hp read every option from
flags, DYNASOAR_* variables or a --config file (docs/operating.md)."""

#: Commands that talk to a Service Provider (a refused connection means none runs there).
SP_CLIENTS = frozenset({"publish", "deploy", "undeploy", "status", "logs"}) | OWNER_COMMANDS


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples keep their lines; every option's default is shown (unless it has none)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default:" in text
            or default in (None, False, [], argparse.SUPPRESS)
            or not action.option_strings
        ):
            return text
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line said in one line (exit status 2)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        description = kwargs.get("description")
        if isinstance(description, str) and "\n" not in description:
            kwargs["description"] = textwrap.fill(description, 90)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command's parser, and each subcommand's."""
    parser = Parser(prog="dynasoar", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"dynasoar {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    add_server_parsers(sub)
    add_client_parsers(sub)
    return parser, dict(sub.choices)


def main(argv: list[str] | None = None) -> int:
    parser, commands = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command they were given to
        commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    command: Callable[[argparse.Namespace], int] = args.func
    from dynasoar import logsetup

    try:
        if args.command in ("sp", "hp"):
            if not prepare(args):
                return 0
            logsetup.configure(args.log_level, args.log_format, args.verbose)
        else:
            logsetup.configure()
            if getattr(args, "ca", None) is not None:
                os.environ["DYNASOAR_CA"] = str(args.ca)  # every client library reads it there
            if hasattr(args, "sp"):
                args.given_sp = args.sp
                args.sp = args.sp or sp_default()
        return command(args)
    except StartupError as exc:
        print(f"dynasoar {args.command}: {exc}", file=sys.stderr)
        return 2
    except Unreachable as exc:
        if args.command in SP_CLIENTS and not _direct(args):
            print(
                f"dynasoar {args.command}: no Service Provider answers at {args.sp} "
                f"({exc.why}): start one (dynasoar sp), or point --sp or ${SP_ENV} at yours",
                file=sys.stderr,
            )
        else:
            print(f"dynasoar {args.command}: {exc.reason}", file=sys.stderr)
        return 1
    except DynasoarError as exc:
        print(f"dynasoar {args.command}: {exc.reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _direct(args: argparse.Namespace) -> bool:
    return getattr(args, "given_sp", None) is None and getattr(args, "hp", None) is not None
