"""The catalog spreads a service's messages over its routed versions by smooth weighted
round-robin: every run of 100 messages gives each version its share, interleaved."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from dynasoar.paths import samples_dir
from dynasoar.provider.catalog import Catalog
from dynasoar.provider.registry import Registry, ServiceRecord

WSDL = (samples_dir() / "echo" / "Echo.wsdl").read_bytes()


def version(v: str) -> ServiceRecord:
    return ServiceRecord(
        name="Echo",
        version=v,
        kind="code",
        stateless=True,
        sha256=v.replace(".", "") * 32,
        size=1,
        published=datetime(2026, 1, int(v[0]), tzinfo=UTC),
        package="/nowhere",
        wsdl=WSDL,
    )


def test_each_version_gets_its_share_in_every_hundred(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "r.sqlite")
    try:
        for v in ("1.0", "2.0", "3.0"):
            registry.put_version(version(v))
        registry.set_route("Echo", (("1.0", 70), ("2.0", 20), ("3.0", 10)))
        catalog = Catalog(registry)
        advertised = catalog.get("Echo")
        assert advertised is not None and advertised.record.version == "1.0"
        picks = [advertised.pick().version for _ in range(1000)]
        for start in range(0, 1000, 100):
            assert Counter(picks[start : start + 100]) == {"1.0": 70, "2.0": 20, "3.0": 10}
        # interleaved, not in blocks: never more than 4 of the 70% version in a row
        longest = max(len(run) for run in "".join(p[0] for p in picks).split("2") if run)
        assert longest <= 8
    finally:
        registry.close()


def test_a_route_to_versions_no_longer_kept_is_not_advertised(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "r.sqlite")
    try:
        registry.put_version(version("1.0"))
        registry.set_route("Echo", (("1.0", 100),))
        catalog = Catalog(registry)
        assert catalog.get("Echo") is not None
        registry.remove_service("Echo")
        assert catalog.refresh("Echo") is None
        assert catalog.get("Echo") is None and catalog.all() == []
    finally:
        registry.close()
