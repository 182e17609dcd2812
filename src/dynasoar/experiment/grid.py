"""What a sweep covers: network profiles x service sizes x compute granularities x strategies,
and how many calls each measured sequence makes. ``QUICK`` fits in ten minutes on two cores,
``FULL`` is the whole grid of the issue, ``TINY`` is the test suite's."""

from __future__ import annotations

from dataclasses import dataclass

from dynasoar.experiment.shaping import PROFILES, Profile

MIB = 1 << 20
#: job: ship the code with every request; code: dynasoar deploys the code package once;
#: vm-full: dynasoar ships the whole VM image once (runtime + service layer);
#: vm-overlay: the host holds the runtime already, only the service's overlay travels
#: (the VM strategies above boot: their packages opt out of snapshots);
#: vm-snap: the host holds the package and its snapshot (taken at an earlier boot of it):
#: nothing travels, a copy of the saved guest is restored instead of a boot;
#: vm-snap-ship: the host holds nothing, the SP holds the package's snapshot: the images and
#: the snapshot travel, and a copy is restored
STRATEGIES = ("job", "code", "vm-full", "vm-overlay", "vm-snap", "vm-snap-ship")
DEPLOYED = ("code", "vm-full", "vm-overlay", "vm-snap", "vm-snap-ship")
VM_STRATEGIES = ("vm-full", "vm-overlay", "vm-snap", "vm-snap-ship")


@dataclass(frozen=True)
class Grid:
    name: str
    profiles: tuple[Profile, ...]
    sizes: tuple[int, ...]  # bytes of the service's own part that travels
    granularities: tuple[int, ...]  # milliseconds of CPU per call
    strategies: tuple[str, ...] = STRATEGIES
    #: each vm-full (and vm-snap-ship) point needs a fresh Host Provider
    vm_full_sizes: tuple[int, ...] = ()
    job_calls: int = 2  # job-model calls in sequence per (profile, size, granularity)
    warm_calls: int = 3  # a deployed sequence makes at least this many calls after the cold one
    max_calls: int = 60  # ... and runs on until the break-even is seen, up to this many
    calls_axis: tuple[int, ...] = (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)

    def runs(self, strategy: str) -> bool:
        return strategy in self.strategies

    def sizes_for(self, strategy: str) -> tuple[int, ...]:
        if not self.runs(strategy):
            return ()
        if strategy in ("vm-full", "vm-snap-ship"):
            return tuple(s for s in self.sizes if s in self.vm_full_sizes)
        return self.sizes

    @property
    def reference_granularity(self) -> int:
        """The granularity the totals plot and the n*-vs-size plot are drawn at."""
        return min(self.granularities, key=lambda g: abs(g - 10))

    def steps(self) -> int:
        """Measurement steps for the progress bar: job calls and deployed sequences."""
        per_profile = 0
        for size in self.sizes:
            if self.runs("job"):
                per_profile += self.job_calls * len(self.granularities)
            if self.runs("code"):
                per_profile += len(self.granularities)
            per_profile += sum(int(size in self.sizes_for(s)) for s in VM_STRATEGIES)
        return (per_profile + 1) * len(self.profiles)  # + 1: the link's calibration


_ALL = tuple(PROFILES.values())

QUICK = Grid(
    name="quick",
    profiles=_ALL,
    sizes=(1 * MIB, 4 * MIB, 8 * MIB),
    granularities=(1, 10, 100, 1000),
    vm_full_sizes=(1 * MIB,),
    job_calls=2,
    warm_calls=3,
    max_calls=80,
)

FULL = Grid(
    name="full",
    profiles=_ALL,
    sizes=(1 * MIB, 4 * MIB, 16 * MIB, 64 * MIB, 256 * MIB),
    granularities=(1, 3, 10, 30, 100, 300, 1000),
    vm_full_sizes=(1 * MIB, 4 * MIB, 16 * MIB, 64 * MIB, 256 * MIB),
    job_calls=3,
    warm_calls=5,
    max_calls=300,
)

TINY = Grid(
    name="tiny",
    profiles=(PROFILES["100M-10ms"],),
    sizes=(1 * MIB,),
    granularities=(1, 50),
    strategies=("job", "code"),
    job_calls=1,
    warm_calls=2,
    max_calls=8,
)
