"""Every case of the corpus against the running platform: the exact answer, both servers still
serving, nothing changed, memory flat (see the package docstring)."""

from __future__ import annotations

import pprint
import time
from collections.abc import Callable

import pytest

from integration.wire import Reply, post

from .cases import CASES, Case, Message
from .conftest import RSS_PER_CASE, RSS_SETTLE, Hostile, MiB

pytestmark = pytest.mark.integration

#: What must never be in an answer: a traceback, a file the server read, a server path.
LEAKS = (b"Traceback", b"root:x:0:0", b"/etc/shadow", b"PRIVATE KEY")


def send(hostile: Hostile, case: Case) -> Reply:
    built = case.build(hostile)
    started = time.monotonic()
    reply = _deliver(hostile, case, built)
    took = time.monotonic() - started
    assert case.budget is None or took <= case.budget, f"{case.id}: took {took:.1f} s"
    return reply


def _deliver(hostile: Hostile, case: Case, built: Message | Callable[[], Reply]) -> Reply:
    if not isinstance(built, Message):
        return built()  # a raw socket script: it checks the connection itself
    base = {
        "sp-service": hostile.echo_url,
        "sp-management": hostile.management_url,
        "hp": hostile.hp_port_url,
    }[case.target]
    if built.path is not None:
        base = (hostile.hp_url if case.target == "hp" else hostile.sp_url) + built.path
    return post(
        base, built.body, headers=built.headers, content_type=built.content_type, timeout=60
    )


def judge(case: Case, reply: Reply, hostile: Hostile) -> None:
    expected = case.expected
    got = (reply.status, _codes(reply) if expected.codes is not None else None)
    assert got == (expected.status, expected.codes), (
        f"{case.id}: expected {expected.status} {expected.codes}, got {got}\n{reply.body[:800]!r}"
    )
    for leak in (*LEAKS, *case.absent, str(hostile.work).encode()):
        assert leak not in reply.body, f"{case.id}: the answer contains {leak!r}"


def _codes(reply: Reply) -> tuple[str, ...]:
    if reply.status == 200 and b"Fault" not in reply.body:
        return ()
    return tuple(reply.fault_codes())


@pytest.fixture(scope="module")
def warmed(hostile: Hostile) -> Hostile:
    """Every heavy case sent once, unjudged, then the first RSS sample of the baseline."""
    for case in CASES:
        if case.heavy:
            _deliver(hostile, case, case.build(hostile))
    hostile.alive()
    hostile.rss.record("(after the warm-up)")
    return hostile


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input(warmed: Hostile, case: Case) -> None:
    hostile = warmed
    before = hostile.state()
    rss_before = hostile.rss.now()
    peaks = dict(rss_before)
    for _ in range(case.repeat):
        reply = send(hostile, case)
        judge(case, reply, hostile)
        # Right after the answer, before anything else runs in the servers: what a case
        # leaves in memory shows here, whether it leaked or only waits for a collection.
        time.sleep(RSS_SETTLE)
        peaks = {role: max(peaks[role], rss) for role, rss in hostile.rss.now().items()}
    grown = hostile.rss.rises[case.id] = {role: peaks[role] - rss_before[role] for role in peaks}
    assert all(g <= RSS_PER_CASE for g in grown.values()), (
        f"{case.id}: RSS after {case.repeat} run(s) is up by "
        f"{ {r: f'{g / MiB:+.1f} MiB' for r, g in grown.items()} }"
    )
    hostile.alive()
    after = hostile.settled(before)
    assert after == before, f"{case.id} changed state:\n{_diff(before, after)}"
    sample = hostile.rss.record(case.id)
    over = hostile.rss.over_budget(sample)
    assert not over, f"{case.id}: {over}\n{hostile.rss.report()}"


def test_memory_stayed_flat(warmed: Hostile) -> None:
    """After the whole corpus, both servers are within RSS_BUDGET of their baseline."""
    hostile = warmed
    hostile.alive()
    sample = hostile.rss.record("(after the corpus)")
    print("\n" + hostile.rss.report())
    assert hostile.rss.baseline is not None, "too few cases ran to take a baseline"
    assert not hostile.rss.over_budget(sample), hostile.rss.report()


def test_corpus_size() -> None:
    """At least 50 cases, every port attacked, ids unique."""
    assert len(CASES) >= 50
    assert {case.target for case in CASES} == {"sp-service", "sp-management", "hp"}
    assert len({case.id for case in CASES}) == len(CASES)


def _diff(before: dict[str, object], after: dict[str, object]) -> str:
    lines = []
    for key in before:
        if before[key] != after.get(key):
            lines.append(f"-- {key} before:\n{pprint.pformat(before[key])}")
            lines.append(f"-- {key} after:\n{pprint.pformat(after.get(key))}")
    return "\n".join(lines)
