"""The client side of the MTOM benchmark, in its own process so its memory can be measured:
``python -m dynasoar.bench.publisher PACKAGE SP_URL`` prepares the package (hashing images),
then times the upload alone and prints JSON with the seconds and the process's peak RSS."""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.consumer.publish import prepare


def main() -> int:
    package, sp = Path(sys.argv[1]), sys.argv[2]
    client = ProviderClient(sp)
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        upload = prepare(package, Path(tmp))
        idle_kib = _rss_kib()
        started = time.perf_counter()
        info = client.send(upload)
        seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    json.dump(
        {
            "seconds": seconds,
            "bytes": info.size,
            "images_sent": info.images_sent,
            "idle_kib": idle_kib,
            "peak_kib": peak_kib,
        },
        sys.stdout,
    )
    return 0


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
