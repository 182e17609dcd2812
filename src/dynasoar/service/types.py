"""spyne models of the types both ports share (dynasoar.xsd)."""

from __future__ import annotations

from spyne import ComplexModel, Integer, Long

from dynasoar import ns
from dynasoar.images import CacheStats


class ImageCache(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    images = Integer
    bytes = Long
    capacity = Long
    received = Long


def image_cache(stats: CacheStats | None) -> ImageCache | None:
    if stats is None:
        return None
    return ImageCache(
        images=stats.images, bytes=stats.bytes, capacity=stats.capacity, received=stats.received
    )
