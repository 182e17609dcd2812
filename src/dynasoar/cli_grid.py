"""The ``dynasoar sp`` options for running several SPs on one shared registry, and how big a
fleet's heartbeats may be; registered by :mod:`dynasoar.cli` with one line."""

from __future__ import annotations

import argparse
from typing import Any

from dynasoar.provider.heartbeats import DEFAULT_RATE


def add_grid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--registry",
        metavar="URL",
        help="keep the registry in this PostgreSQL database (postgresql://USER@HOST:PORT/DB), "
        "shared by every SP given the same URL: they relay to every deployment, deploy each "
        "service once between them and take turns at the control loop (default: an SQLite "
        "file under --data, for this SP alone)",
    )
    p.add_argument(
        "--heartbeat-rate",
        type=float,
        default=DEFAULT_RATE,
        metavar="BEATS",
        help="heartbeats a second this SP asks of the whole fleet: hosts are told to beat "
        f"less often as the fleet grows (default {DEFAULT_RATE:g})",
    )


def grid_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.registry is not None and not args.registry.startswith(
        ("postgresql://", "postgres://")
    ):
        raise SystemExit(
            f"dynasoar sp: --registry {args.registry!r} is not a postgresql:// URL "
            "(without --registry, the SP keeps an SQLite file under --data)"
        )
    if args.heartbeat_rate <= 0:
        raise SystemExit("dynasoar sp: --heartbeat-rate must be above 0")
    return {"registry": args.registry, "heartbeat_rate": args.heartbeat_rate}
