"""The sweep: the network, the actors and the measurements, in that order of nesting, so that a
failure or a signal anywhere unwinds through every teardown (actors, then libvirt, then the
delay processes, then the namespaces).

Per profile: calibrate the link; then per size: the job model's calls at every granularity,
then the deployed strategies' real sequences of Compute(g) calls through the SP from an
undeployed start (the first call deploys). A sequence runs until its running total has met the
job model's (the break-even seen) and at least ``warm_calls`` more, up to ``max_calls``. Code
makes one sequence per granularity. A VM boot costs seconds, so each VM strategy deploys once
per size: its sequence runs at the reference granularity as above, then, on the same
deployment, ``warm_calls + 1`` warm calls at each other granularity. vm-full needs a Host
Provider that holds nothing (restarted with an empty data directory); vm-overlay needs one that
holds the runtime (a vm-full deployment, or an unmeasured warm-up, put it there). The snapshot
strategies share one package per size: an unmeasured first boot has the host take its
snapshot and the SP fetch it; vm-snap then restores it where it was taken, and vm-snap-ship on
a Host Provider restarted empty, which gets the images and the snapshot from the SP."""

from __future__ import annotations

import contextlib
import functools
import shutil
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from dynasoar.experiment.calls import JobTiming, Operation, Stint, crossed, job_call, sequence
from dynasoar.experiment.grid import VM_STRATEGIES, Grid
from dynasoar.experiment.hypervisor import PrivateLibvirt
from dynasoar.experiment.netns import Namespaces, NamespaceThread, remove_leftovers
from dynasoar.experiment.packages import Package, code_package, vm_package, vm_runtime_bytes
from dynasoar.experiment.probe import calibrate
from dynasoar.experiment.progress import Progress
from dynasoar.experiment.results import Call, LinkMeasure, link_measure, load1
from dynasoar.experiment.shaping import Profile, Shaper
from dynasoar.experiment.signals import interrupts_unwind
from dynasoar.experiment.testbed import MESSAGE_LIMIT, Testbed

#: a deployment whose transfer alone would take longer than this is not attempted through the
#: SP (it answers a message within 150 s at most); the point is listed as skipped
TRANSFER_LIMIT = MESSAGE_LIMIT - 30.0
T = TypeVar("T")


@dataclass
class Sweep:
    grid: Grid
    work: Path
    progress: Progress
    calls: list[Call] = field(default_factory=list)
    links: list[LinkMeasure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _sequence: int = 0
    _code: dict[int, Package] = field(default_factory=dict)
    _published: set[str] = field(default_factory=set)
    _hp_clean: bool = True  # holds no VM image
    _hp_runtime: bool = False  # holds the VM runtime (base, kernel, initrd)

    def run(self) -> None:
        vm = any(self.grid.sizes_for(s) for s in VM_STRATEGIES)
        with interrupts_unwind():
            remove_leftovers()
            with Namespaces() as nss:
                sp_ns, hp_ns = nss.add("sp"), nss.add("hp")
                link = nss.link(sp_ns, hp_ns)
                with (
                    Shaper([link]) as shaper,
                    NamespaceThread(sp_ns) as consumer,
                    NamespaceThread(hp_ns) as far,
                    contextlib.ExitStack() as stack,
                ):
                    shaper.apply(self.grid.profiles[0])
                    uri = None
                    if vm:
                        uri = stack.enter_context(PrivateLibvirt(hp_ns, self.work / "libvirt")).uri
                    bed = stack.enter_context(Testbed(self.work, link, consumer, uri))
                    try:
                        for profile in self.grid.profiles:
                            shaper.apply(profile)
                            measured = calibrate(
                                consumer, far, link.right_addr, _probe_bytes(profile)
                            )
                            self.links.append(
                                link_measure(profile, measured.rtt, measured.goodput_bit)
                            )
                            self.progress.step()
                            self.progress.note(
                                f"{profile.label}: measured RTT {measured.rtt * 1000:.2f} ms, "
                                f"goodput {measured.goodput_bit / 1e6:.1f} Mbit/s"
                            )
                            for size in self.grid.sizes:
                                self._cell(bed, profile, size)
                    finally:
                        self._keep_logs(bed)

    # -- one (profile, size) ----------------------------------------------------------------

    def _cell(self, bed: Testbed, profile: Profile, size: int) -> None:
        code = self._code_package(size)
        where = f"{profile.name} {{}} {size >> 20} MiB"
        jobs: dict[int, list[float]] = {}
        if self.grid.runs("job"):
            for g in self.grid.granularities:
                measure = functools.partial(self._jobs, bed, profile, code, g)
                steps = self.grid.job_calls
                times = self._point(where.format(f"job g={g}"), measure, profile, code.size, steps)
                jobs[g] = times or []
        if self.grid.runs("code"):
            for g in self.grid.granularities:
                stints = [self._untilcrossed(g, jobs)]
                sequence_at = functools.partial(
                    self._deployed, bed, profile, "code", code, stints, code.size
                )
                self._point(where.format(f"code g={g}"), sequence_at, profile, code.size)
        if size in self.grid.sizes_for("vm-full"):
            if self._hp_clean or self._point(
                f"{profile.name} restarting the Host Provider",
                functools.partial(self._restart_hp, bed),
                profile,
                0,
                steps=0,
            ):
                self._vm(bed, profile, "vm-full", size, vm_runtime_bytes(), jobs)
        if size in self.grid.sizes_for("vm-overlay"):
            if self._hp_runtime or self._point(
                f"{profile.name} warming up the VM runtime",
                functools.partial(self._warm_up_runtime, bed),
                profile,
                0,
                steps=0,
            ):
                self._vm(bed, profile, "vm-overlay", size, 0, jobs)
        if size in self.grid.sizes_for("vm-snap"):
            self._snapshots(bed, profile, size, jobs)

    def _untilcrossed(self, g: int, jobs: dict[int, list[float]]) -> Stint:
        """Compute(g) from the cold call on, until the job model's running total is met."""
        least = self.grid.warm_calls + 1
        done = crossed({g: jobs.get(g, [])}, least)
        return Stint(Operation(g), least, self.grid.max_calls, done)

    def _vm_stints(self, jobs: dict[int, list[float]]) -> list[Stint]:
        """One deployment for every granularity: the reference one until the break-even is
        seen, then a short warm stint at each other (its calls give t_X(g); the deployment's D
        is measured once, from the cold call)."""
        reference = self.grid.reference_granularity
        warm = self.grid.warm_calls + 1
        return [self._untilcrossed(reference, jobs)] + [
            Stint(Operation(g), warm, warm, lambda _: True)
            for g in self.grid.granularities
            if g != reference
        ]

    def _restart_hp(self, bed: Testbed) -> bool:
        bed.restart_hp()
        self._hp_clean, self._hp_runtime = True, False
        return True

    def _vm(
        self,
        bed: Testbed,
        profile: Profile,
        strategy: str,
        size: int,
        runtime: int,
        jobs: dict[int, list[float]],
    ) -> None:
        where = f"{profile.name} {strategy} {size >> 20} MiB"
        if self._beyond_reach(where, profile, size + runtime, 1):
            return
        tag = f"{strategy.removeprefix('vm-')[0].upper()}{self.grid.profiles.index(profile)}"
        package = vm_package(self.work / "packages", f"Vm{tag}x{size >> 20}M", size)
        shipped = package.size + runtime

        def measure() -> bool:
            self._hp_clean = False
            stints = self._vm_stints(jobs)
            return self._deployed(bed, profile, strategy, package, stints, shipped)

        try:
            if self._point(where, measure, profile, shipped):
                self._hp_runtime = True
        finally:
            shutil.rmtree(package.root, ignore_errors=True)

    def _snapshots(
        self, bed: Testbed, profile: Profile, size: int, jobs: dict[int, list[float]]
    ) -> None:
        """vm-snap, then (at the vm-full sizes) vm-snap-ship, on one package: its snapshot
        taken by an unmeasured first boot, and fetched by the SP."""
        index = self.grid.profiles.index(profile)
        package = vm_package(self.work / "packages", f"VmS{index}x{size >> 20}M", size, True)
        where = f"{profile.name} {{}} {size >> 20} MiB"
        try:
            snapshot = self._point(
                where.format("snapshotting"),
                functools.partial(self._take_snapshot, bed, package),
                profile,
                package.size + vm_runtime_bytes(),
                steps=0,
            )
            if snapshot is None:
                self.progress.step(
                    len([s for s in ("vm-snap", "vm-snap-ship") if self._at(s, size)])
                )
                return
            stints = self._vm_stints(jobs)
            measure = functools.partial(self._deployed, bed, profile, "vm-snap", package, stints, 0)
            self._point(where.format("vm-snap"), measure, profile, 0)
            if self._at("vm-snap-ship", size):
                shipped = package.size + vm_runtime_bytes() + snapshot
                if self._hp_clean or self._point(
                    f"{profile.name} restarting the Host Provider",
                    functools.partial(self._restart_hp, bed),
                    profile,
                    0,
                    steps=0,
                ):
                    self._hp_clean = False
                    measure = functools.partial(
                        self._deployed, bed, profile, "vm-snap-ship", package,
                        self._vm_stints(jobs), shipped,
                    )  # fmt: skip
                    if self._point(where.format("vm-snap-ship"), measure, profile, shipped):
                        self._hp_runtime = True
        finally:
            shutil.rmtree(package.root, ignore_errors=True)

    def _at(self, strategy: str, size: int) -> bool:
        return size in self.grid.sizes_for(strategy)

    def _take_snapshot(self, bed: Testbed, package: Package) -> int:
        """One cold call (a boot: the host saves the guest just after), until the SP holds
        the snapshot too; then undeployed. Returns the snapshot's bytes."""
        self._publish(bed, package.root, package.name)
        self._hp_clean = False
        bed.consumer.run(
            sequence, bed.service_url(package.name), [Stint(Operation(0), 1, 1, lambda _: True)]
        )
        bed.undeploy(package.name)
        self._hp_runtime = True
        return bed.snapshot_of(package.name)

    def _warm_up_runtime(self, bed: Testbed) -> bool:
        """Put the VM runtime in the Host Provider's cache (unmeasured)."""
        package = vm_package(self.work / "packages", "VmWarmUp", 0)
        self._publish(bed, package.root, package.name)
        bed.consumer.run(
            sequence, bed.service_url(package.name), [Stint(Operation(0), 1, 1, lambda _: True)]
        )
        bed.undeploy(package.name)
        self._hp_clean, self._hp_runtime = False, True
        return True

    # -- measurements ---------------------------------------------------------------------------

    def _jobs(self, bed: Testbed, profile: Profile, package: Package, g: int) -> list[float]:
        seq = self._next_sequence()
        times = []
        for index in range(1, self.grid.job_calls + 1):
            self.progress.start(f"{profile.name} job {package.size >> 20} MiB g={g} ms #{index}")
            timing: JobTiming = bed.consumer.run(job_call, bed.hp_url, package, Operation(g))
            self.calls.append(
                Call(
                    profile.name,
                    "job",
                    package.nominal,
                    package.size,
                    "Compute",
                    g,
                    seq,
                    index,
                    True,
                    timing.total,
                    timing.deploy,
                    timing.call,
                    timing.undeploy,
                    load1(),
                )
            )
            times.append(timing.total)
            self.progress.step()
        return times

    def _deployed(
        self,
        bed: Testbed,
        profile: Profile,
        strategy: str,
        package: Package,
        stints: list[Stint],
        shipped: int,
    ) -> bool:
        size = package.nominal
        asked = ", ".join(f"{s.operation.name}({s.operation.millis})" for s in stints)
        self.progress.start(f"{profile.name} {strategy} {size >> 20} MiB {asked}")
        self._publish(bed, package.root, package.name)
        seq = self._next_sequence()
        try:
            timings, cold = bed.consumer.run(sequence, bed.service_url(package.name), stints)
        except Exception:  # not on a signal: the consumer's thread may still be busy
            with contextlib.suppress(Exception):
                bed.undeploy(package.name)
            raise
        bed.undeploy(package.name)
        if not cold:
            raise RuntimeError(f"the first call to {package.name} did not deploy it")
        load = load1()
        ops = [s.operation for s in stints]
        timed = [(op, t) for op, durations in zip(ops, timings, strict=True) for t in durations]
        for index, (op, seconds) in enumerate(timed, start=1):
            self.calls.append(
                Call(
                    profile.name,
                    strategy,
                    size,
                    shipped if index == 1 else 0,
                    op.name,
                    op.millis,
                    seq,
                    index,
                    index == 1,
                    seconds,
                    load1=load,
                )
            )
        self.progress.step()
        return True

    def _point(
        self, where: str, measure: Callable[[], T], profile: Profile, shipped: int, steps: int = 1
    ) -> T | None:
        """``measure()``, unless the transfer is beyond what the SP waits for (skipped); a
        failure is recorded and the sweep goes on (a signal is not caught here)."""
        if self._beyond_reach(where, profile, shipped, steps):
            return None
        try:
            return measure()
        except Exception as exc:
            self.failures.append(report_failure(where, exc))
            self.progress.step(steps)
            return None

    def _beyond_reach(self, where: str, profile: Profile, shipped: int, steps: int) -> bool:
        if profile.transfer_seconds(shipped) <= TRANSFER_LIMIT:
            return False
        self.skipped.append(
            f"{where}: {shipped / (1 << 20):.0f} MiB take "
            f"{profile.transfer_seconds(shipped):.0f} s at {profile.label}"
        )
        self.progress.step(steps)
        return True

    # -- helpers -------------------------------------------------------------------------------

    def _code_package(self, size: int) -> Package:
        if size not in self._code:
            self._code[size] = code_package(self.work / "packages", f"Code{size >> 20}M", size)
        return self._code[size]

    def _publish(self, bed: Testbed, root: Path, name: str) -> None:
        if name not in self._published:
            bed.publish(root)
            self._published.add(name)

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def _keep_logs(self, bed: Testbed) -> None:
        logs = self.work / "kept-logs"
        logs.mkdir(parents=True, exist_ok=True)
        for name, text in bed.logs().items():
            (logs / f"{name}.log").write_text(text)


def _probe_bytes(profile: Profile) -> int:
    """About a second of traffic at the profile's rate (at most 64 MiB)."""
    return min(int(profile.rate_bit / 8), 64 << 20)


def report_failure(where: str, exc: BaseException) -> str:
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    print(f"\n{where}: {detail}", file=sys.stderr)
    return f"{where}: {detail}"
