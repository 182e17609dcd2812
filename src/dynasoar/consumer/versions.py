"""The client side of a service's versions: ``Rollout``, ``Rollback``, ``SetTraffic`` and
``Unpublish`` through the SP's management port, and how what they did is told."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.errors import InvalidRequest


def rollout(sp: str, name: str, version: str, force: bool) -> Any:
    return ProviderClient(sp).call("Rollout", name=name, version=version, force=force or None)


def rollback(sp: str, name: str) -> Any:
    return ProviderClient(sp).call("Rollback", name=name)


def split(sp: str, name: str, shares: Sequence[tuple[str, int]]) -> Any:
    if sum(w for _, w in shares) != 100:
        raise InvalidRequest(
            "the shares must add up to 100, not "
            + " + ".join(str(w) for _, w in shares)
            + f" = {sum(w for _, w in shares)}"
        )
    client = ProviderClient(sp)
    factory = client.service._binding.wsdl.types.get_type("{urn:dynasoar:2006}TrafficShare")
    return client.call(
        "SetTraffic", name=name, share=[factory(version=v, percent=w) for v, w in shares]
    )


def unpublish(sp: str, name: str, version: str | None, undeploy: bool) -> list[str]:
    removed = ProviderClient(sp).call(
        "Unpublish", name=name, version=version, undeploy=undeploy or None
    )
    return list(removed or [])


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
