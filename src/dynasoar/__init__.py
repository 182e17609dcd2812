"""dynasoar: dynamic deployment and hosting of SOAP services.

Three actors: a consumer (any SOAP client), a Service Provider that advertises services and
deploys them on demand (:mod:`dynasoar.provider`), and Host Providers that host them
(:mod:`dynasoar.host`). The standards they speak live in :mod:`dynasoar.soap`.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
