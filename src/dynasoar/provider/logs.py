"""The Service Provider's GetLogs: a service's output logs, gathered from the Host Providers it
runs on and those it ran on before (the registry remembers them; the hosts keep the logs of
deployments that failed or were undeployed), each host asked at once and within a deadline."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from dynasoar.consumer.host_client import HostClient
from dynasoar.errors import DynasoarError, UnknownService
from dynasoar.logs import LogChunk
from dynasoar.provider.registry import Registry

log = logging.getLogger(__name__)

#: text in one reply at most; logs beyond it come back empty, to be asked for again
MAX_REPLY_TEXT = 8 << 20


@dataclass(frozen=True)
class GatheredLogs:
    logs: list[LogChunk]
    unreachable: list[str]  # hosts that should have had some but did not answer


class ServiceLogs:
    def __init__(self, registry: Registry, client: HostClient, timeout: float = 15.0) -> None:
        self._registry = registry
        self._client = client
        self._timeout = timeout

    async def gather(
        self,
        name: str,
        deployment: str | None = None,
        tail: int | None = None,
        cursors: Mapping[str, int] | None = None,
    ) -> GatheredLogs:
        hosts = self._hosts_of(name, deployment)
        if not hosts and self._registry.service(name) is None:
            raise UnknownService(f"no service named {name!r} has been published here")
        results = await asyncio.gather(
            *(
                self._client.get_logs(
                    host, name, self._timeout, deployment=deployment, tail=tail, cursors=cursors
                )
                for host in hosts
            ),
            return_exceptions=True,
        )
        found: list[LogChunk] = []
        unreachable: list[str] = []
        for host, result in zip(hosts, results, strict=True):
            if isinstance(result, DynasoarError):
                log.warning("logs of %s on %s: %s", name, host, result.reason)
                unreachable.append(host)
            elif isinstance(result, BaseException):
                raise result
            else:
                found += [chunk.on(host) for chunk in result]
        found.sort(key=lambda chunk: chunk.started)
        return GatheredLogs(_within(found, MAX_REPLY_TEXT), unreachable)

    def _hosts_of(self, name: str, deployment: str | None) -> list[str]:
        """Where the service's logs may be: the hosts of its deployments, then the hosts it was
        deployed on before. One deployment that is running: its host only."""
        current = self._registry.deployments_of(name)
        if deployment is not None:
            for record in current:
                if record.id == deployment:
                    return [record.host]
        hosts = [record.host for record in current] + self._registry.service_hosts(name)
        return list(dict.fromkeys(hosts))


def _within(chunks: list[LogChunk], budget: int) -> list[LogChunk]:
    """The chunks, those past ``budget`` characters of text emptied (their ``next`` back at
    their ``start``: a follower asks for them again)."""
    kept = []
    for chunk in chunks:
        if len(chunk.text) > budget:
            chunk = replace(chunk, text="", next=chunk.start)
        budget -= len(chunk.text)
        kept.append(chunk)
    return kept
