"""Boot time of the vm-echo guest through the libvirt backend: from ``start()`` (the domain's
create) to the first SOAP answer, median of 3 (not collected by pytest: run it directly).

    .venv/bin/python tests/host/vm_boot_bench.py [--runs N] [--overlay] [--accel tcg|kvm|auto]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vm_support import BASE, FULL, OVERLAY, URI, lay_out, output_log, require_vm_host

from dynasoar.host.backends.libvirt import LibvirtBackend

ECHO = (
    b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
    b'xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header>'
    b"<a:Action>urn:dynasoar:samples:echo/Echo</a:Action><a:MessageID>urn:uuid:bench</a:MessageID>"
    b'</s:Header><s:Body><e:Echo xmlns:e="urn:dynasoar:samples:echo"><e:text>bench</e:text>'
    b"</e:Echo></s:Body></s:Envelope>"
)


def one_boot(backend: LibvirtBackend, package: Path, work: Path) -> tuple[float, float]:
    """Seconds from start() to ready, and to the first SOAP answer."""
    deployment = lay_out(package, work / uuid.uuid4().hex)
    base = BASE if package == OVERLAY else None
    began = time.monotonic()
    started = backend.start(
        uuid.uuid4().hex,
        deployment.root,
        deployment.manifest,
        began + 120,
        output=output_log(deployment),
        base_image=base,
    )
    ready = time.monotonic() - began
    try:
        request = urllib.request.Request(started.endpoint, ECHO, {"Content-Type": "text/xml"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert b"<tns:text>bench</tns:text>" in response.read()
        answered = time.monotonic() - began
    finally:
        backend.stop(started.handle, grace=1.0)
    return ready, answered


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--overlay", action="store_true", help="the overlay-on-base package")
    parser.add_argument("--accel", choices=("tcg", "kvm", "auto"), default="tcg")
    args = parser.parse_args()
    try:
        require_vm_host()
    except BaseException as exc:  # pytest.skip outside pytest
        print(f"cannot bench: {exc}", file=sys.stderr)
        return 2
    package = OVERLAY if args.overlay else FULL
    backend = LibvirtBackend(URI, accel=args.accel, scope=f"bench{uuid.uuid4().hex[:6]}")
    results = []
    with tempfile.TemporaryDirectory(prefix="dynasoar-vm-bench-") as tmp:
        for run in range(1, args.runs + 1):
            ready, answered = one_boot(backend, package, Path(tmp))
            results.append(answered)
            print(f"run {run}: ready {ready:.2f} s, first SOAP answer {answered:.2f} s")
    backend.close()
    print(
        f"{package.name} ({args.accel}): create() -> first SOAP answer, "
        f"median of {len(results)}: {statistics.median(results):.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
