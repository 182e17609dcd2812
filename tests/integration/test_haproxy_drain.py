"""An SP stopped (SIGTERM) or restarted in place (SIGHUP) behind deploy/haproxy/haproxy.cfg
while 16 consumers call through HAProxy: its /readyz turns 503 at once, HAProxy sends it
nothing new, what it holds is answered, and no call fails (the SIGKILL case, where the
messages it held are lost, is test_haproxy.py's)."""

from __future__ import annotations

import signal
import time

import pytest

from .conftest import wait_for
from .grid import Grid
from .load import Load, summary
from .test_haproxy import _answers, balanced, echo_deployed  # noqa: F401  (the fixture)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "sig",
    [
        pytest.param(signal.SIGTERM, id="SIGTERM"),
        # make test restarts an SP in place under load without HAProxy (test_restarts.py)
        pytest.param(signal.SIGHUP, id="SIGHUP", marks=pytest.mark.soak),
    ],
)
def test_an_sp_stopped_or_restarted_behind_haproxy_costs_no_call(
    balanced: tuple[Grid, str],  # noqa: F811
    sig: signal.Signals,
) -> None:
    grid, lb = balanced
    a = grid.sps[0]  # stopped or restarted; the other SP serves on
    echo_deployed(grid, lb)
    load = Load(lb, echo=16, counter=0, timeout=60.0).start()
    try:
        wait_for(lambda: load.count() > 300, timeout=60, what="calls through HAProxy")
        a.process.send_signal(sig)
        signalled = time.monotonic()
        if sig == signal.SIGTERM:
            wait_for(lambda: a.process.poll() is not None, timeout=60, what="the SP to stop")
        else:  # the same process, re-executed, listening on the same socket
            time.sleep(0.5)
            wait_for(lambda: _answers(a.url), timeout=60, what="the SP to be ready again")
        wait_for(lambda: len(load.after(signalled)) > 300, timeout=60, what="calls after it")
        if sig == signal.SIGHUP:
            served = a.log().count("Echo")
            wait_for(lambda: a.log().count("Echo") > served, timeout=30, what="calls via A")
    finally:
        outcomes = load.stop()
    assert all(o.ok for o in outcomes), f"signalled at {signalled:.2f}\n" + summary(outcomes)
    assert len(load.after(signalled)) > 300
