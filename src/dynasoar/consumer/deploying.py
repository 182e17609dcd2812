"""``dynasoar deploy``, with its phases on a terminal: only what the client itself observes.

Through a Service Provider the client sends one small Deploy and waits; meanwhile it can see the
SP's record of the deployment (``ListDeployments``: "deploying" on a host, once the SP has
chosen one). Straight to a Host Provider, the client ships the package itself: it sees the bytes
go, then waits for the host to start it. Either way it sees the reply arrive. Nothing is drawn
when the stream is not a terminal."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, TextIO

from dynasoar.consumer import direct
from dynasoar.consumer.provider_client import ProviderClient

#: How often the SP's record is looked at while its Deploy is under way.
POLL_SECONDS = 0.5


class Phases:
    """One status line, rewritten in place as the deployment goes on."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.started = time.monotonic()
        self._last = ""

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        if self.enabled and text != self._last:
            self._last = text
            self.stream.write(f"\r\x1b[K{text}")
            self.stream.flush()

    def end(self, text: str | None = None) -> None:
        if not self.enabled:
            return
        if text is not None:
            self.say(text)
        if self._last:
            self.stream.write("\n")
            self.stream.flush()


def via_provider(sp: str, name: str, host: str | None, stream: TextIO) -> Any:
    """Deploy ``name`` through the SP (on ``host`` if given): its DeploymentInfo."""
    phases = Phases(stream)
    phases.say(f"{name}: asking {sp} to deploy it")
    if not phases.enabled:
        return ProviderClient(sp).call("Deploy", name=name, host=host)
    outcome: dict[str, Any] = {}

    def deploy() -> None:
        try:
            outcome["value"] = ProviderClient(sp).call("Deploy", name=name, host=host)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=deploy, name="deploy", daemon=True)
    worker.start()
    watcher = ProviderClient(sp, timeout=10.0)
    try:
        while worker.is_alive():
            worker.join(POLL_SECONDS)
            if worker.is_alive():
                phases.say(f"{name}: {_seen(watcher, name)} ({phases.elapsed:.1f} s)")
    except BaseException:
        phases.end()
        raise
    if "error" in outcome:
        phases.end(f"{name}: failed after {phases.elapsed:.1f} s")
        raise outcome["error"]
    info = outcome["value"]
    phases.end(f"{name}: ready in {phases.elapsed:.1f} s on {info.host}")
    return info


def _seen(watcher: ProviderClient, name: str) -> str:
    """What the SP's registry says of the deployment under way."""
    try:
        records = watcher.call("ListDeployments", name=name) or []
    except Exception:  # the view is a courtesy: the Deploy itself reports what failed
        return "waiting for the SP"
    deploying = [r for r in records if r.state == "deploying"]
    if deploying:
        return f"the SP is deploying it on {deploying[0].host}"
    return "the SP is choosing a host"


def to_host(package: Path, host: str, stream: TextIO) -> tuple[str, str]:
    """Ship ``package`` straight to ``host``: (deployment id, endpoint)."""
    phases = Phases(stream)

    def sent(done: int, total: int) -> None:
        mib = total / (1 << 20)
        if done < total:
            phases.say(f"{package.name}: shipping {done / total:4.0%} of {mib:.1f} MiB to {host}")
        else:
            phases.say(f"{package.name}: shipped {mib:.1f} MiB; {host} is starting it")

    phases.say(f"{package.name}: packing")
    try:
        deployment_id, endpoint = direct.deploy(package, host, on_progress=sent)
    except BaseException:
        phases.end(f"{package.name}: failed after {phases.elapsed:.1f} s")
        raise
    phases.end(f"{package.name}: ready in {phases.elapsed:.1f} s")
    return deployment_id, endpoint
