"""A deployment's save and resume on a Host Provider, one at a time (``hosting._holding``): one
that comes while the other is under way waits for it, and past MOVING_WAIT is answered dyn:Busy
rather than left waiting."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dynasoar.errors import Busy
from dynasoar.host import hosting
from dynasoar.host.hosting import Hosted, _holding


def _hosted(tmp_path: Path) -> Hosted:
    return Hosted(
        "d1", "VmCounter", "1.0", "vm", "http://127.0.0.1:1/", datetime.now(UTC), tmp_path, None
    )


def test_a_resume_during_a_save_waits_for_it(tmp_path: Path) -> None:
    hosted = _hosted(tmp_path)
    order: list[str] = []
    saving = threading.Event()

    def save() -> None:
        with _holding(hosted):
            saving.set()
            time.sleep(0.3)
            order.append("saved")

    saver = threading.Thread(target=save)
    saver.start()
    saving.wait(5)
    with _holding(hosted):
        order.append("resumed")
    saver.join()
    assert order == ["saved", "resumed"]


def test_one_that_waits_past_the_limit_is_answered_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hosting, "MOVING_WAIT", 0.2)
    hosted = _hosted(tmp_path)
    hosted.moving.acquire()  # a save that does not end
    try:
        with pytest.raises(Busy) as caught, _holding(hosted):
            pytest.fail("ran while the save was under way")
        assert "has been saving or resuming for 0 s; retry shortly" in caught.value.reason
    finally:
        hosted.moving.release()
    with _holding(hosted):  # free again once the save ends
        pass
