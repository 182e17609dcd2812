"""spyne models of the types both ports share (dynasoar.xsd)."""

from __future__ import annotations

from spyne import ComplexModel, Double, Integer, Long, Unicode

from dynasoar import ns
from dynasoar.images import CacheStats
from dynasoar.terms import HostTerms

#: A string element both ports require (present, not nil).
Required = Unicode(min_occurs=1, nillable=False)


class ImageCache(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    images = Integer
    bytes = Long
    capacity = Long
    received = Long


class Site(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    name = Unicode
    distance = Integer


class Label(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    name = Unicode
    value = Unicode


class HostTermsModel(ComplexModel):  # type: ignore[misc]
    __namespace__ = ns.DYN
    __type_name__ = "HostTerms"
    price = Double
    site = Site.customize(max_occurs="unbounded")
    label = Label.customize(max_occurs="unbounded")


def host_terms(terms: HostTerms | None) -> HostTermsModel | None:
    if terms is None:
        return None
    return HostTermsModel(
        price=terms.price,
        site=[Site(name=n, distance=d) for n, d in terms.sites],
        label=[Label(name=n, value=v) for n, v in terms.labels],
    )


def image_cache(stats: CacheStats | None) -> ImageCache | None:
    if stats is None:
        return None
    return ImageCache(
        images=stats.images, bytes=stats.bytes, capacity=stats.capacity, received=stats.received
    )
