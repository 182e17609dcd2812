"""The client side of mobility (the ``dynasoar move`` and ``drain`` commands): a service's
deployment moved to another host (a VM guest with its state; it returns once the route has
switched), and every deployment moved off a host, through the SP's management port."""

from __future__ import annotations

from typing import Any

from dynasoar.consumer.provider_client import ProviderClient

#: A move ships a guest's memory and disk: it may take a while on a slow link.
MOVE_TIMEOUT = 600.0


def move(sp: str, service: str, host: str) -> Any:
    return ProviderClient(sp, timeout=MOVE_TIMEOUT).call("Move", name=service, host=host)


def drain(sp: str, host: str) -> int:
    return int(ProviderClient(sp, timeout=MOVE_TIMEOUT).call("DrainHost", address=host))


def describe(moved: Any) -> str:
    line = (
        f"moved {moved.service} from {moved.source} to {moved.target} in {moved.seconds:.2f} s "
        f"(messages held {moved.held:.2f} s"
    )
    if moved.bytes:
        line += f", {moved.bytes / (1 << 20):.1f} MiB of state shipped"
    return line + f"); deployment {moved.deployment}"
