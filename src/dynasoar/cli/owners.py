"""The ``dynasoar`` commands of a service's owner and its operator: its versions (``rollout``,
``rollback``, ``traffic``, ``unpublish``), what its consumers used (``usage``), and where it runs
(``move``, ``drain``): their options, help and examples. What they do is in
:mod:`dynasoar.consumer.versions`, :mod:`.usage` and :mod:`.mobility`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import date
from typing import Any

#: The commands here, all of which talk to a Service Provider.
COMMANDS = frozenset({"rollout", "rollback", "traffic", "unpublish", "usage", "move", "drain"})


def share_arg(text: str) -> tuple[str, int]:
    version, sep, percent = text.rpartition("=")
    if not sep or not version or not percent.strip().isdigit():
        raise argparse.ArgumentTypeError(f"not VERSION=PERCENT: {text!r}")
    return version, int(percent)


def add_owner_parsers(
    sub: argparse._SubParsersAction[Any], sp_arg: Callable[[argparse.ArgumentParser], None]
) -> None:
    p = sub.add_parser(
        "rollout",
        help="move all of a service's traffic to one version",
        description="Move all of a service's traffic to one version: new deployments of it are "
        "started and probed ready, then the route switches, then the old deployments finish "
        "the messages they have and are undeployed. A stateful service keeps its deployment "
        "(and its state) unless --force.",
        epilog="examples:\n  dynasoar rollout Echo 2.0\n  dynasoar rollout Counter 2.0 --force",
    )
    p.add_argument("name", help="the service")
    p.add_argument("version", help="the version to run")
    p.add_argument(
        "--force",
        action="store_true",
        help="a stateful service: switch now, dropping its deployment's state",
    )
    sp_arg(p)
    p.set_defaults(func=_rollout)

    p = sub.add_parser(
        "rollback",
        help="go back to a service's traffic before its last change",
        epilog="examples:\n  dynasoar rollback Echo",
    )
    p.add_argument("name", help="the service")
    sp_arg(p)
    p.set_defaults(func=_rollback)

    p = sub.add_parser(
        "traffic",
        help="split a stateless service's traffic between versions (a canary)",
        description="Split a stateless service's traffic between versions; each version with "
        "a share is deployed and ready before it gets any.",
        epilog="examples:\n  dynasoar traffic Echo 1.0=90 2.0=10",
    )
    p.add_argument("name", help="the service")
    p.add_argument(
        "shares",
        nargs="+",
        metavar="VERSION=PERCENT",
        type=share_arg,
        help="each version's share, adding up to 100",
    )
    sp_arg(p)
    p.set_defaults(func=_traffic)

    p = sub.add_parser(
        "unpublish",
        help="stop advertising a service, or one version of it (refused while deployed)",
        description="Stop advertising a service (its messages are then answered "
        "wsa:DestinationUnreachable), or one version of it. Refused while it is deployed, "
        "unless --undeploy (its deployments are drained first), and for a version that "
        "still takes a share of the traffic.",
        epilog="examples:\n  dynasoar unpublish Echo 1.0\n  dynasoar unpublish Echo --undeploy",
    )
    p.add_argument("name", help="the service")
    p.add_argument("version", nargs="?", help="only this version")
    p.add_argument("--undeploy", action="store_true", help="undeploy what runs it first")
    sp_arg(p)
    p.set_defaults(func=_unpublish)

    p = sub.add_parser(
        "usage",
        help="what each consumer used, and what it costs",
        description="The usage book: per consumer, service, version, host and day, messages, "
        "bytes, wall time, CPU seconds, memory GiB-seconds and image bytes, priced at each "
        "host's --price (per CPU-second) and --price-gib (per GiB moved). Who a consumer is: "
        "a signed message's signer, else the dyn:Consumer it names, else its address.",
        epilog="examples:\n  dynasoar usage\n  dynasoar usage --consumer alice --since "
        "2026-12-01 --csv",
    )
    p.add_argument("--consumer", help="one consumer's lines only")
    p.add_argument(
        "--since", type=date.fromisoformat, metavar="YYYY-MM-DD", help="from this day on"
    )
    form = p.add_mutually_exclusive_group()
    form.add_argument("--csv", action="store_true", help="one CSV line per line of the book")
    form.add_argument("--json", action="store_true", help="the book as JSON")
    sp_arg(p)
    p.set_defaults(func=_usage)

    p = sub.add_parser(
        "move",
        help="move a service's deployment to another host (a VM guest with its state)",
        description="Move a service's deployment to another Host Provider. A VM guest moves "
        "with its state: paused, saved (memory and disk), shipped by digest (only what the "
        "target lacks), restored there; then the route switches and the source is destroyed. "
        "Messages that arrive meanwhile wait at the SP and are relayed after. A stateless code "
        "service is deployed on the target, then switched to; a stateful code service's state "
        "lives in its process and cannot move. Returns once the route has switched, printing "
        "how long the move took.",
        epilog="examples:\n  dynasoar move VmCounter --to http://127.0.0.1:8002",
    )
    p.add_argument("service", help="the service")
    p.add_argument("--to", required=True, metavar="HOST_URL", help="the Host Provider to move to")
    sp_arg(p)
    p.set_defaults(func=_move)

    p = sub.add_parser(
        "drain",
        help="move every deployment off a Host Provider; it takes nothing new",
        description="Move every deployment off a Host Provider (VM guests with their state, "
        "stateless code services redeployed elsewhere); it takes no new deployment until it "
        "registers again.",
        epilog="examples:\n  dynasoar drain http://127.0.0.1:8001",
    )
    p.add_argument("host", metavar="HOST_URL", help="the Host Provider to drain")
    sp_arg(p)
    p.set_defaults(func=_drain)


def _rollout(args: argparse.Namespace) -> int:
    from dynasoar.consumer import versions

    print(versions.describe(versions.rollout(args.sp, args.name, args.version, args.force)))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from dynasoar.consumer import versions

    print(versions.describe(versions.rollback(args.sp, args.name)))
    return 0


def _traffic(args: argparse.Namespace) -> int:
    from dynasoar.consumer import versions

    print(versions.describe(versions.split(args.sp, args.name, args.shares)))
    return 0


def _unpublish(args: argparse.Namespace) -> int:
    from dynasoar.consumer import versions

    removed = versions.unpublish(args.sp, args.name, args.version, args.undeploy)
    print(f"{args.name}: unpublished {', '.join(removed) or 'nothing'}")
    return 0


def _usage(args: argparse.Namespace) -> int:
    from dynasoar.consumer import usage

    rows = usage.fetch(args.sp, args.consumer, args.since)
    if args.json:
        print(usage.as_json(rows))
    elif args.csv:
        print(usage.as_csv(rows), end="")
    else:
        print(usage.render(rows))
    return 0


def _move(args: argparse.Namespace) -> int:
    from dynasoar.consumer import mobility

    print(mobility.describe(mobility.move(args.sp, args.service, args.to)))
    return 0


def _drain(args: argparse.Namespace) -> int:
    from dynasoar.consumer import mobility

    count = mobility.drain(args.sp, args.host)
    plural = "s" if count != 1 else ""
    print(f"{args.host}: {count} deployment{plural} moved off; it takes no new ones")
    return 0
