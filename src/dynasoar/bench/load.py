"""A closed-loop SOAP load generator, run as its own process so that it never shares a GIL
with what it measures: ``python -m dynasoar.bench.load URL --body FILE ...`` prints JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from dynasoar.http import ConnectionPool, new_event_loop


async def _worker(
    pool: ConnectionPool,
    url: str,
    headers: list[tuple[str, str]],
    body: bytes,
    until: float,
    latencies: list[float],
    errors: list[str],
    expect: bytes,
) -> None:
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            response = await pool.request(url, "POST", headers=headers, body=body, timeout=30.0)
            data = await response.read_all(1 << 20)
        except Exception as exc:
            errors.append(type(exc).__name__)
            await asyncio.sleep(0.01)  # a failed call is retried as a client would: not at once
            continue
        if response.status != 200 or expect not in data:
            errors.append(f"HTTP {response.status}")
            await asyncio.sleep(0.01)
            continue
        latencies.append(time.perf_counter() - started)


async def run(
    url: str,
    body: bytes,
    soap_action: str,
    concurrency: int,
    duration: float,
    warmup: float,
    expect: bytes,
) -> dict[str, object]:
    headers = [("Content-Type", "text/xml; charset=utf-8"), ("SOAPAction", f'"{soap_action}"')]
    pool = ConnectionPool(max_idle_per_origin=concurrency)
    try:
        if warmup > 0:
            await asyncio.gather(
                *(
                    _worker(pool, url, headers, body, time.monotonic() + warmup, [], [], expect)
                    for _ in range(concurrency)
                )
            )
        latencies: list[float] = []
        errors: list[str] = []
        started = time.monotonic()
        await asyncio.gather(
            *(
                _worker(pool, url, headers, body, started + duration, latencies, errors, expect)
                for _ in range(concurrency)
            )
        )
        elapsed = time.monotonic() - started
    finally:
        await pool.close()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0.0

    return {
        "requests": len(latencies),
        "errors": len(errors),
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50": pct(0.50),
        "p99": pct(0.99),
        "max": latencies[-1] if latencies else 0.0,
        "error_kinds": sorted(set(errors)),
    }


def command(
    url: str,
    body: Path,
    soap_action: str,
    expect: str,
    concurrency: int,
    duration: float,
    warmup: float,
) -> list[str]:
    """The command line that runs this load generator as a process of its own."""
    return [
        sys.executable,
        "-m",
        "dynasoar.bench.load",
        url,
        "--body",
        str(body),
        "--soap-action",
        soap_action,
        "--expect",
        expect,
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--body", type=Path, required=True)
    parser.add_argument("--soap-action", default="")
    parser.add_argument("--expect", default="")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args(argv)
    loop = new_event_loop()
    result = loop.run_until_complete(
        run(
            args.url,
            args.body.read_bytes(),
            args.soap_action,
            args.concurrency,
            args.duration,
            args.warmup,
            args.expect.encode(),
        )
    )
    loop.close()
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
