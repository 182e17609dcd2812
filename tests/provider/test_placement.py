"""Placement: which Host Provider gets a new deployment (least loaded among hosts with room)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynasoar.provider.placement import HostView, least_loaded


def host(address: str, capacity: int, deployments: int, load: float = 0.0) -> HostView:
    return HostView(f"http://{address}", capacity, deployments, load)


CASES = {
    "no-hosts": ([], []),
    "all-full": ([host("a", 2, 2), host("b", 1, 1)], []),
    "no-capacity": ([host("a", 0, 0)], []),
    "over-committed": ([host("a", 2, 3), host("b", 4, 1)], ["b"]),
    "lowest-utilisation-first": (
        [host("a", 4, 1), host("b", 2, 1), host("c", 1, 0)], ["c", "a", "b"]
    ),
    "utilisation-not-count": ([host("big", 10, 3), host("small", 2, 1)], ["big", "small"]),
    "same-utilisation-fewer-deployments": ([host("a", 4, 2), host("b", 2, 1)], ["b", "a"]),
    "then-cpu-load": ([host("a", 2, 1, 0.9), host("b", 2, 1, 0.1)], ["b", "a"]),
    "then-address": ([host("b", 2, 0), host("a", 2, 0)], ["a", "b"]),
    "full-ones-skipped": (
        [host("full", 1, 1, 0.0), host("busy", 8, 6, 3.0), host("idle", 8, 0, 0.5)],
        ["idle", "busy"],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_least_loaded(case: str) -> None:
    hosts, expected = CASES[case]
    assert [h.address for h in least_loaded(hosts)] == [f"http://{a}" for a in expected]


@pytest.mark.parametrize(
    ("capacity", "deployments", "room", "utilisation"),
    [(4, 0, True, 0.0), (4, 3, True, 0.75), (4, 4, False, 1.0), (0, 0, False, 1.0)],
)
def test_host_view_figures(capacity: int, deployments: int, room: bool, utilisation: float) -> None:
    view = host("a", capacity, deployments)
    assert view.has_room is room
    assert view.utilisation == utilisation


_hosts = st.lists(
    st.builds(
        HostView,
        st.text("abcdef", min_size=1, max_size=4).map(lambda s: f"http://{s}"),
        st.integers(0, 8),
        st.integers(0, 10),
        st.floats(0, 16, allow_nan=False),
    ),
    max_size=12,
    unique_by=lambda h: h.address,
)


@given(_hosts, st.randoms(use_true_random=False))
def test_result_does_not_depend_on_the_order_hosts_answered(
    hosts: list[HostView], rng: random.Random
) -> None:
    shuffled = list(hosts)
    rng.shuffle(shuffled)
    best = least_loaded(hosts)
    assert least_loaded(shuffled) == best
    assert all(h.has_room for h in best)
    assert {h.address for h in best} == {h.address for h in hosts if h.deployments < h.capacity}
    # Nobody later in the list is strictly better on utilisation.
    assert [h.utilisation for h in best] == sorted(h.utilisation for h in best)
