"""The client side of a service's versions: ``dynasoar rollout``, ``rollback``, ``traffic`` and
``unpublish`` through the SP's management port, and how what they did is told."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.errors import InvalidRequest


def add_commands(sub: Any, sp_default: str) -> None:
    """The version commands, on the ``dynasoar`` command's subparsers."""
    p = sub.add_parser(
        "rollout",
        help="move all of a service's traffic to one version (deployed and ready first, "
        "then switched, then the old deployments drained)",
    )
    p.add_argument("name", help="the service")
    p.add_argument("version", help="the version to run")
    p.add_argument(
        "--force",
        action="store_true",
        help="a stateful service: switch now, dropping its deployment's state",
    )
    _sp_arg(p, sp_default)
    p.set_defaults(func=_rollout)

    p = sub.add_parser("rollback", help="go back to the traffic before the last change")
    p.add_argument("name", help="the service")
    _sp_arg(p, sp_default)
    p.set_defaults(func=_rollback)

    p = sub.add_parser(
        "traffic", help="split a stateless service's traffic between versions (a canary)"
    )
    p.add_argument("name", help="the service")
    p.add_argument(
        "shares",
        nargs="+",
        metavar="VERSION=PERCENT",
        type=share_arg,
        help="e.g. 1.0=90 2.0=10 (adding up to 100)",
    )
    _sp_arg(p, sp_default)
    p.set_defaults(func=_traffic)

    p = sub.add_parser(
        "unpublish",
        help="stop advertising a service (or one version of it); refused while deployed",
    )
    p.add_argument("name", help="the service")
    p.add_argument("version", nargs="?", help="only this version")
    p.add_argument("--undeploy", action="store_true", help="undeploy what runs it first (drained)")
    _sp_arg(p, sp_default)
    p.set_defaults(func=_unpublish)


def _sp_arg(p: argparse.ArgumentParser, sp_default: str) -> None:
    p.add_argument(
        "--sp", default=sp_default, metavar="URL", help=f"the Service Provider ({sp_default})"
    )


def share_arg(text: str) -> tuple[str, int]:
    version, sep, percent = text.rpartition("=")
    if not sep or not version or not percent.strip().isdigit():
        raise argparse.ArgumentTypeError(f"not VERSION=PERCENT: {text!r}")
    return version, int(percent)


def describe(outcome: Any) -> str:
    """A change of route, in a few words."""
    shares = ", ".join(f"{s.version} {s.percent}%" for s in outcome.share or [])
    lines = [f"{outcome.service}: {shares}"]
    if outcome.started or outcome.retired:
        lines.append(
            f"  {len(outcome.started or [])} deployment(s) started, "
            f"{len(outcome.retired or [])} drained and undeployed"
            + (f", in {outcome.seconds:.1f} s" if outcome.seconds else "")
        )
    if outcome.note:
        lines.append(f"  {outcome.note}")
    return "\n".join(lines)


def _rollout(args: argparse.Namespace) -> int:
    outcome = ProviderClient(args.sp).call(
        "Rollout", name=args.name, version=args.version, force=args.force or None
    )
    print(describe(outcome))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    print(describe(ProviderClient(args.sp).call("Rollback", name=args.name)))
    return 0


def _traffic(args: argparse.Namespace) -> int:
    shares = split(args.shares)
    client = ProviderClient(args.sp)
    factory = client.service._binding.wsdl.types.get_type("{urn:dynasoar:2006}TrafficShare")
    outcome = client.call(
        "SetTraffic", name=args.name, share=[factory(version=v, percent=w) for v, w in shares]
    )
    print(describe(outcome))
    return 0


def split(shares: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    if sum(w for _, w in shares) != 100:
        raise InvalidRequest(
            "the shares must add up to 100, not "
            + " + ".join(str(w) for _, w in shares)
            + f" = {sum(w for _, w in shares)}"
        )
    return list(shares)


def _unpublish(args: argparse.Namespace) -> int:
    removed = ProviderClient(args.sp).call(
        "Unpublish", name=args.name, version=args.version, undeploy=args.undeploy or None
    )
    print(f"{args.name}: unpublished {', '.join(removed or []) or 'nothing'}")
    return 0
