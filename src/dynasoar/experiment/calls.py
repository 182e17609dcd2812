"""The consumer's side of a measurement: timed SOAP calls (plain SOAP 1.1, routed by URL and
SOAPAction), a job-model call (ship the package straight to the Host Provider, call it once,
undeploy), and a sequence of calls through the Service Provider, in stints of one granularity
each. Everything here runs in the consumer's namespace thread."""

from __future__ import annotations

import http.client
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from dynasoar.consumer import direct
from dynasoar.consumer.host_client import PackageShipment
from dynasoar.experiment.packages import Package
from dynasoar.package import load_manifest

ECHO_NS = "urn:dynasoar:samples:echo"
ENVELOPE = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>{body}</s:Body>'
    "</s:Envelope>"
)
CALL_TIMEOUT = 600.0


@dataclass(frozen=True)
class Operation:
    """What one call asks: Compute(millis), the same operation of the same contract whether
    the echo service runs as code or in the vm-echo guest."""

    millis: int
    name: str = "Compute"

    def envelope(self) -> bytes:
        body = f'<e:Compute xmlns:e="{ECHO_NS}"><e:millis>{self.millis}</e:millis></e:Compute>'
        return ENVELOPE.format(body=body).encode()

    @property
    def action(self) -> str:
        return f'"{ECHO_NS}/{self.name}"'

    @property
    def expect(self) -> bytes:
        return f"{self.name}Response".encode()


class CallError(RuntimeError):
    pass


class Caller:
    """One keep-alive connection to a SOAP endpoint; ``call`` returns (seconds, headers)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.path = parts.path or "/"
        self._conn = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port or 80, timeout=CALL_TIMEOUT
        )

    def call(self, operation: Operation) -> tuple[float, dict[str, str]]:
        body = operation.envelope()
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": operation.action}
        started = time.perf_counter()
        self._conn.request("POST", self.path, body=body, headers=headers)
        response = self._conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200 or operation.expect not in data:
            raise CallError(
                f"{operation.name} on {self.path}: HTTP {response.status} {data[:300]!r}"
            )
        return elapsed, {k.lower(): v for k, v in response.getheaders()}

    def close(self) -> None:
        self._conn.close()


@dataclass(frozen=True)
class JobTiming:
    deploy: float  # ship the package, the host unpacks and starts it, answers with the endpoint
    call: float  # the one call (a new connection to the new endpoint)
    undeploy: float

    @property
    def total(self) -> float:
        return self.deploy + self.call + self.undeploy


def job_call(host: str, package: Package, operation: Operation) -> JobTiming:
    """The job model: the package travels with the request, runs once, and is removed."""
    assert package.archive is not None
    manifest = load_manifest(package.root)
    shipment = PackageShipment(
        service=manifest.name,
        version=manifest.version,
        kind=manifest.kind,
        stateless=manifest.stateless,
        path=package.archive,
        sha256=package.sha256,
        images=(),
    )
    started = time.perf_counter()
    deployment_id, endpoint = direct.ship(host, shipment, CALL_TIMEOUT)
    deployed = time.perf_counter()
    caller = Caller(endpoint)
    try:
        call, _ = caller.call(operation)
    finally:
        caller.close()
    called = time.perf_counter()
    direct.undeploy(deployment_id, host, CALL_TIMEOUT)
    return JobTiming(deployed - started, call, time.perf_counter() - called)


@dataclass(frozen=True)
class Stint:
    """Part of a sequence: calls of one operation until ``done(durations)`` (the stint's own
    durations so far), at least ``least`` and at most ``most`` of them."""

    operation: Operation
    least: int
    most: int
    done: Callable[[list[float]], bool]


def sequence(url: str, stints: list[Stint]) -> tuple[list[list[float]], bool]:
    """Calls through the SP, stint after stint on one connection: the per-call wall times of
    each stint in order, and whether the first call deployed (X-Dynasoar-Cold)."""
    caller = Caller(url)
    timings: list[list[float]] = []
    cold = False
    try:
        for stint in stints:
            durations: list[float] = []
            timings.append(durations)
            while len(durations) < stint.most:
                elapsed, headers = caller.call(stint.operation)
                if len(timings) == 1 and not durations:
                    cold = headers.get("x-dynasoar-cold") == "1"
                durations.append(elapsed)
                if len(durations) >= stint.least and stint.done(durations):
                    break
    finally:
        caller.close()
    return timings, cold


def crossed(jobs: dict[int, list[float]], least: int) -> Callable[[list[float]], bool]:
    """Whether a deployed sequence (its durations so far) has met the job model's running
    total at every granularity in ``jobs`` (beyond the job calls made: their mean)."""

    def done(durations: list[float]) -> bool:
        if len(durations) < least:
            return False
        for times in jobs.values():
            if not times:
                continue
            mean = statistics.fmean(times)
            own = job = 0.0
            met = False
            for n, seconds in enumerate(durations, start=1):
                own += seconds
                job += times[n - 1] if n <= len(times) else mean
                if own <= job:
                    met = True
                    break
            if not met:
                return False
        return True

    return done
