"""Network profiles and how a link gets them: bandwidth with ``tc tbf`` on each end's egress,
latency with a delay process on each end's ingress (``netem`` would do both, but this kernel
is built without ``sch_netem``; see delay.py). Half the round-trip time is added each way, so
a profile's RTT is what a ping would see; the rate applies in each direction."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from types import TracebackType

from dynasoar.experiment.netns import Link, NetworkError, command, in_namespace
from dynasoar.procs import first_line

#: the tbf queue: this many seconds of traffic at the profile's rate (at least 256 KiB)
QUEUE_SECONDS = 0.05


@dataclass(frozen=True)
class Profile:
    name: str
    rate_bit: float  # bits per second, each direction
    rtt: float  # seconds, round trip

    @property
    def label(self) -> str:
        rate = self.rate_bit
        speed = f"{rate / 1e9:g} Gbit/s" if rate >= 1e9 else f"{rate / 1e6:g} Mbit/s"
        return f"{speed} · {self.rtt * 1000:g} ms"

    def transfer_seconds(self, size: int) -> float:
        """What ``size`` bytes cost at the nominal rate (no protocol overhead)."""
        return size * 8 / self.rate_bit


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("10M-50ms", 10e6, 0.050),
        Profile("100M-10ms", 100e6, 0.010),
        Profile("1G-1ms", 1e9, 0.001),
    )
}


def tbf_arguments(rate_bit: float) -> list[str]:
    rate_bytes = rate_bit / 8
    burst = max(128 << 10, int(rate_bytes * 0.002))  # GSO packets are up to 64 KiB each
    limit = max(256 << 10, int(rate_bytes * QUEUE_SECONDS)) + burst
    return ["tbf", "rate", f"{int(rate_bit)}bit", "burst", str(burst), "limit", str(limit)]


class Shaper:
    """Shapes the given links; ``apply`` switches profiles, ``close`` stops the delay processes
    (the qdiscs and rules go with the namespaces)."""

    def __init__(self, links: list[Link]) -> None:
        self.links = links
        self.profile: Profile | None = None
        self._delayers: dict[tuple[str, str], subprocess.Popen[bytes]] = {}

    def apply(self, profile: Profile) -> None:
        for link in self.links:
            for ns, dev in link.ends():
                command(
                    "tc",
                    "-n",
                    ns,
                    "qdisc",
                    "replace",
                    "dev",
                    dev,
                    "root",
                    *tbf_arguments(profile.rate_bit),
                )
                self._delay(ns, dev, link.index, profile.rtt / 2)
        self.profile = profile

    def _delay(self, ns: str, dev: str, queue: int, seconds: float) -> None:
        running = self._delayers.get((ns, dev))
        if running is not None and running.poll() is None:
            assert running.stdin is not None
            running.stdin.write(f"{seconds!r}\n".encode())
            running.stdin.flush()
            return
        process = subprocess.Popen(
            [
                *in_namespace(ns),
                sys.executable,
                "-m",
                "dynasoar.experiment.delay",
                str(queue),
                repr(seconds),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        line = first_line(process, 15.0)
        if not line.startswith("delaying queue"):
            process.kill()
            _, err = process.communicate(timeout=5)
            raise NetworkError(f"the delay process in {ns} did not start: {line} {err.decode()}")
        self._delayers[(ns, dev)] = process
        # the rule after the process: without a listener NFQUEUE drops (there is no bypass, so a
        # dead delay process shows as a dead link, never as a silently fast one)
        rules = command(*in_namespace(ns), "iptables", "-w", "-t", "mangle", "-S", "PREROUTING")
        rule = ["-i", dev, "-j", "NFQUEUE", "--queue-num", str(queue)]
        if f"-i {dev} -j NFQUEUE" not in rules:
            command(*in_namespace(ns), "iptables", "-w", "-t", "mangle", "-A", "PREROUTING", *rule)

    def close(self) -> None:
        for process in self._delayers.values():
            if process.stdin is not None:
                process.stdin.close()  # end of input: it exits
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        self._delayers.clear()

    def __enter__(self) -> Shaper:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
