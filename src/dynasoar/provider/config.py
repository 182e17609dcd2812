"""The Service Provider's settings, as the command line, the environment and the config file
give them (``dynasoar sp``; docs/operating.md lists every one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dynasoar.provider.autoscaler import Scaling
from dynasoar.provider.heartbeats import DEFAULT_RATE
from dynasoar.provider.placement import DEFAULT_POLICY
from dynasoar.soap.security import Policy, TrustStore


@dataclass
class ProviderConfig:
    data: Path
    hosts: list[str] = field(default_factory=list)
    deploy_timeout: float = 120.0
    message_timeout: float = 150.0
    call_timeout: float = 60.0  # a service's call deadline when its manifest sets none
    keep_versions: int = 5  # published versions kept per service (besides those in use)
    max_upload_bytes: int = 64 << 30  # one MTOM upload (VM images are big)
    placement: str = DEFAULT_POLICY
    ca: Path | None = None  # verifies https:// Host Providers
    security: Policy = field(default_factory=Policy)  # signs for hosts, believes their replies
    consumer_trust: TrustStore | None = None  # consumers whose signed messages it believes
    scaling: Scaling = field(default_factory=Scaling)
    #: URLs this SP is reached at besides the one it listens on (behind a proxy, say).
    public_urls: list[str] = field(default_factory=list)
    soap12_sender_status: int = 400  # HTTP status of a SOAP 1.2 Sender fault
    #: Patterns of the ReplyTo / FaultTo addresses replies may be sent to (none: no address).
    reply_to_allow: list[str] = field(default_factory=list)
    reply_retry_for: float = 600.0  # how long a reply is tried before it is given up
    #: A shared PostgreSQL registry (postgresql://...); None: an SQLite file under ``data``.
    registry: str | None = None
    heartbeat_rate: float = DEFAULT_RATE  # beats a second asked of the whole fleet
    #: Where the SPs sharing the registry reach this one (for its VM images); None: the URL
    #: it listens on.
    peer_url: str | None = None
