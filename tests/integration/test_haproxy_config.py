"""deploy/haproxy/haproxy.cfg against the SP it fronts: its timeouts leave an SP the time the SP
gives a message, so that HAProxy never cuts an answer the SP is still allowed to make."""

from __future__ import annotations

import re
from pathlib import Path

from dynasoar.provider.config import ProviderConfig

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy" / "haproxy.cfg"


def seconds(name: str) -> float:
    found = re.search(rf"(?m)^\s*timeout {name} (\d+)(ms|s|m)?\s*$", CONFIG.read_text())
    assert found, f"the shipped config sets no 'timeout {name}'"
    unit = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 0.001}[found.group(2)]  # bare: ms
    return int(found.group(1)) * unit


def test_haproxy_waits_longer_for_an_sp_than_the_sp_gives_a_message() -> None:
    limit = ProviderConfig(data=Path(".")).message_timeout  # a cold VM deploy included
    assert seconds("server") > limit
    assert seconds("client") > limit
