"""Measure what relaying costs: relay CPU per message against a trivial backend's.

Not a test (pytest does not collect it); run it by hand on a quiet machine:

    .venv/bin/python tests/http/relay_bench.py [--seconds 5] [--concurrency 16] [--rate 650]

Three processes: a trivial backend (answers a fixed ~1 KB SOAP envelope), a relay
(HttpServer + ConnectionPool forwarding bytes unchanged, the SP's hot path) and this
one, the load generator (the same HTTP client, with uvloop). CPU is each server's own
``time.process_time()``, read before and after each phase through a control path.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

from dynasoar.http import ConnectionPool, HttpServer, Request, Response, run

ENVELOPE = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
    b'<soap:Body><ns:echo xmlns:ns="urn:dynasoar:bench"><ns:text>'
    + b"x" * 800
    + b"</ns:text></ns:echo></soap:Body></soap:Envelope>"
)
SOAP_HEADERS = [("Content-Type", "text/xml; charset=utf-8"), ("SOAPAction", '"urn:echo"')]
CPU_PATH = "/__cpu"


# ---- the two servers (child processes) --------------------------------------------------


def cpu_response() -> Response:
    return Response(200, [], repr(time.process_time()).encode())


async def serve_backend() -> None:
    reply = Response(200, SOAP_HEADERS, ENVELOPE)

    async def backend(request: Request) -> Response:
        if request.path == CPU_PATH:
            return cpu_response()
        await request.body.read_all(1 << 20)
        return reply

    await serve(backend)


async def serve_relay(backend_url: str) -> None:
    pool = ConnectionPool(max_idle_per_origin=256)

    async def relay(request: Request) -> Response:
        if request.path == CPU_PATH:
            return cpu_response()
        request.headers.remove("host")
        upstream = await pool.request(
            backend_url + request.target,
            request.method,
            headers=request.headers,
            body=request.body,
            timeout=30,
        )
        return Response(upstream.status, upstream.headers, upstream.body)

    await serve(relay)


async def serve(handler: object) -> None:
    server = HttpServer(handler)  # type: ignore[arg-type]
    _, port = await server.start("127.0.0.1", 0)
    print(port, flush=True)
    await asyncio.Event().wait()


# ---- the load generator -----------------------------------------------------------------


def check(status: int, body: bytes) -> None:
    if status != 200 or body != ENVELOPE:
        raise SystemExit(f"wrong answer: {status} {body[:100]!r}")


async def server_cpu(pool: ConnectionPool, base: str) -> float:
    response = await pool.request(base + CPU_PATH, "GET", timeout=10)
    return float(await response.read_all(100))


async def saturate(target: str, seconds: float, concurrency: int) -> tuple[int, float]:
    pool = ConnectionPool(max_idle_per_origin=concurrency)
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds

    async def worker() -> int:
        done = 0
        while loop.time() < stop:
            response = await pool.request(target, headers=SOAP_HEADERS, body=ENVELOPE, timeout=30)
            check(response.status, await response.read_all(1 << 20))
            done += 1
        return done

    started = loop.time()
    total = sum(await asyncio.gather(*[worker() for _ in range(concurrency)]))
    elapsed = loop.time() - started
    await pool.close()
    return total, elapsed


async def paced(target: str, seconds: float, rate: float) -> tuple[int, float, list[float]]:
    pool = ConnectionPool(max_idle_per_origin=256)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    tasks: list[asyncio.Task[None]] = []

    async def one() -> None:
        sent = time.perf_counter()  # uvloop's loop.time() only has millisecond resolution
        response = await pool.request(target, headers=SOAP_HEADERS, body=ENVELOPE, timeout=30)
        check(response.status, await response.read_all(1 << 20))
        latencies.append(time.perf_counter() - sent)

    started = loop.time()
    due = started
    while due < started + seconds:
        due += 1.0 / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one()))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - started
    await pool.close()
    return len(tasks), elapsed, latencies


async def measure(
    name: str, target: str, servers: dict[str, str], load: object
) -> dict[str, float]:
    control = ConnectionPool()
    before = {role: await server_cpu(control, base) for role, base in servers.items()}
    result = await load  # type: ignore[misc]
    after = {role: await server_cpu(control, base) for role, base in servers.items()}
    await control.close()
    count, elapsed = result[0], result[1]
    row: dict[str, float] = {"messages": count, "req/s": count / elapsed}
    for role in servers:
        row[f"{role} us/msg"] = (after[role] - before[role]) / count * 1e6
    if len(result) > 2:
        row["p50 ms"] = statistics.median(result[2]) * 1e3
    print(f"{name:<32}" + "  ".join(f"{k} {v:,.1f}" for k, v in row.items()), flush=True)
    return row


async def drive(args: argparse.Namespace, backend: str, relay: str) -> None:
    direct, via = backend + "/services/Echo", relay + "/services/Echo"
    both = {"relay": relay, "backend": backend}
    await saturate(via, 1.0, args.concurrency)  # warm up both processes and the pools
    d = await measure(
        "direct, saturated",
        direct,
        {"backend": backend},
        saturate(direct, args.seconds, args.concurrency),
    )
    r = await measure(
        "via relay, saturated", via, both, saturate(via, args.seconds, args.concurrency)
    )
    pd = await measure(
        f"direct, {args.rate:g} req/s",
        direct,
        {"backend": backend},
        paced(direct, args.seconds, args.rate),
    )
    pr = await measure(
        f"via relay, {args.rate:g} req/s", via, both, paced(via, args.seconds, args.rate)
    )
    print()
    print(
        f"saturated: relay CPU / trivial-backend CPU per message = "
        f"{r['relay us/msg'] / r['backend us/msg']:.2f}x; "
        f"throughput via relay / direct = {r['req/s'] / d['req/s']:.2f}"
    )
    print(
        f"at {args.rate:g} req/s: relay {pr['relay us/msg']:.0f} us/msg = "
        f"{pr['relay us/msg'] / 1600:.3f}x of a ~1.6 ms spyne backend message; "
        f"added p50 {pr['p50 ms'] - pd['p50 ms']:+.2f} ms"
    )


def start(role: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--role", role, *extra], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    port = int(child.stdout.readline())
    return child, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=650.0)
    parser.add_argument("--role", choices=["backend", "relay"])
    parser.add_argument("--backend")
    args = parser.parse_args()
    if args.role == "backend":
        run(serve_backend())
        return
    if args.role == "relay":
        run(serve_relay(args.backend))
        return
    backend_proc, backend = start("backend")
    relay_proc, relay = start("relay", "--backend", backend)
    try:
        run(drive(args, backend, relay))
    finally:
        for child in (relay_proc, backend_proc):
            child.terminate()
            child.wait()


if __name__ == "__main__":
    main()
