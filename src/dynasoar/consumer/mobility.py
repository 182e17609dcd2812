"""The client side of mobility: ``dynasoar move SERVICE --to HOST_URL`` (a VM guest moves with
its state; the command returns once the route has switched) and ``dynasoar drain HOST_URL``
(everything moves off a host, which takes nothing new), through the SP's management port."""

from __future__ import annotations

import argparse
from typing import Any

from dynasoar.consumer.provider_client import ProviderClient

#: A move ships a guest's memory and disk: it may take a while on a slow link.
MOVE_TIMEOUT = 600.0


def add_commands(sub: Any, sp_default: str) -> None:
    """The mobility commands, on the ``dynasoar`` command's subparsers."""
    p = sub.add_parser(
        "move",
        help="move a service's deployment to another host (a VM guest with its state: paused, "
        "saved, shipped, restored; messages meanwhile wait at the SP)",
    )
    p.add_argument("service", help="the service")
    p.add_argument("--to", required=True, metavar="HOST_URL", help="the Host Provider to move to")
    p.add_argument("--sp", default=sp_default, metavar="URL", help=f"the SP ({sp_default})")
    p.set_defaults(func=_move)

    p = sub.add_parser(
        "drain",
        help="move every deployment off a Host Provider (VM guests with their state); it takes "
        "nothing new until it deregisters",
    )
    p.add_argument("host", metavar="HOST_URL", help="the Host Provider to drain")
    p.add_argument("--sp", default=sp_default, metavar="URL", help=f"the SP ({sp_default})")
    p.set_defaults(func=_drain)


def _move(args: argparse.Namespace) -> int:
    moved = ProviderClient(args.sp, timeout=MOVE_TIMEOUT).call(
        "Move", name=args.service, host=args.to
    )
    print(describe(moved))
    return 0


def describe(moved: Any) -> str:
    line = (
        f"moved {moved.service} from {moved.source} to {moved.target} in {moved.seconds:.2f} s "
        f"(messages held {moved.held:.2f} s"
    )
    if moved.bytes:
        line += f", {moved.bytes / (1 << 20):.1f} MiB of state shipped"
    return line + f"); deployment {moved.deployment}"


def _drain(args: argparse.Namespace) -> int:
    count = ProviderClient(args.sp, timeout=MOVE_TIMEOUT).call("DrainHost", address=args.host)
    plural = "s" if count != 1 else ""
    print(f"{args.host}: {count} deployment{plural} moved off; it takes no new ones")
    return 0
