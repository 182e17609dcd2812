"""What a Host Provider offers, as placement policies and the bill see it: a price per
CPU-second and per GiB moved (messages and images), the data sites it is near (with a
distance: smaller is nearer) and labels such as ``trusted=yes``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class HostTerms:
    price: float = 0.0  # per CPU-second
    sites: tuple[tuple[str, int], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    price_gib: float = 0.0  # per GiB moved: messages in and out, images shipped

    def distance_to(self, site: str) -> int | None:
        return next((d for name, d in self.sites if name == site), None)

    def satisfies(self, required: Mapping[str, str]) -> bool:
        have = dict(self.labels)
        return all(have.get(name) == value for name, value in required.items())

    def to_json(self) -> dict[str, object]:
        return {
            "price": self.price,
            "price_gib": self.price_gib,
            "sites": [list(s) for s in self.sites],
            "labels": [list(lb) for lb in self.labels],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> HostTerms:
        sites = data.get("sites") or []
        labels = data.get("labels") or []
        assert isinstance(sites, list) and isinstance(labels, list)
        return cls(
            price=float(data.get("price") or 0.0),  # type: ignore[arg-type]
            price_gib=float(data.get("price_gib") or 0.0),  # type: ignore[arg-type]
            sites=tuple((str(n), int(d)) for n, d in sites),
            labels=tuple((str(n), str(v)) for n, v in labels),
        )


def parse_site(text: str) -> tuple[str, int]:
    """``NAME`` or ``NAME=DISTANCE`` (a host near a site without a distance is at 0)."""
    name, sep, distance = text.partition("=")
    if not name.strip():
        raise ValueError(f"a site is NAME or NAME=DISTANCE, not {text!r}")
    return name.strip(), int(distance) if sep else 0


def parse_label(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"a label is NAME=VALUE, not {text!r}")
    return name.strip(), value.strip()
