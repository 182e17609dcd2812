"""Which Service Provider holds which VM image, kept in the registry for the SPs sharing it,
and the secret that lets only those SPs read each other's images.

SPs sharing a registry do not share a disk: a VM package's images stay in the repository of
the SP it was published to (or that fetched them since). Each SP records the images it holds
in ``image_holders`` (digest, the URL its peers reach it at, its instance, size, since when),
at start (exactly what its repository holds: rows of images it no longer has go) and as it
takes images in. An SP that must ship an image it lacks asks this table for the holders that
are running (each SP instance holds a lock of its own while it runs: ``Registry.alive``) and
fetches it from one of them (:mod:`.image_peers`).

Reading an image from a peer is authenticated by a random secret kept in the registry (made by
the first SP that asks, like the registry's identity): the request carries the time, a random
nonce and an HMAC-SHA256 over the digest, the URL of the SP asked, the time and the nonce. The
SP asked accepts it within a clock-skew limit, once: it remembers the nonces it accepted until
their time is out of that limit, so a header seen on the way (a log, a proxy) fetches nothing
again, from it or from another SP. Whoever can read the registry can read its images; no one
else can."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from dynasoar.provider.records import now, upsert
from dynasoar.provider.registry import Registry
from dynasoar.soap.trust import ReplayCache

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS image_holders (
    sha256 TEXT NOT NULL,
    holder TEXT NOT NULL,
    instance TEXT NOT NULL,
    size INTEGER NOT NULL,
    since TEXT NOT NULL,
    PRIMARY KEY (sha256, holder)
);
CREATE INDEX IF NOT EXISTS image_holders_holder ON image_holders (holder);
"""
COLUMNS = "sha256, holder, instance, size, since"
SECRET_KEY = "image-secret"
#: The header an SP reading a peer's image sends: "TIME NONCE HMAC" (epoch seconds, hex, hex).
AUTH_HEADER = "X-Dynasoar-Image-Auth"
#: How far a request's time may be from the reader's clock (as for signed messages).
MAX_SKEW = 300.0


@dataclass(frozen=True)
class Holder:
    """An SP recorded as holding an image: the URL its peers reach it at, its instance."""

    url: str
    instance: str
    size: int


class ImageHolders:
    def __init__(self, registry: Registry, max_skew: float = MAX_SKEW) -> None:
        self._registry = registry
        self.max_skew = max_skew
        registry.adopt(SCHEMA)
        self._secret = self._shared_secret()
        #: The nonces of the requests accepted lately (a fetch is a few a minute at most).
        self._seen = ReplayCache(max_entries=10_000)
        #: The URL the other SPs reach this one at ("" until it listens: nothing is recorded).
        self.url = ""

    def _shared_secret(self) -> bytes:
        with self._registry.transaction() as db:
            # The first SP to ask makes it; every SP sharing the registry reads the same one.
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (SECRET_KEY, secrets.token_hex(32)),
            )
            row = db.execute("SELECT value FROM meta WHERE key = ?", (SECRET_KEY,)).fetchone()
        return bytes.fromhex(str(row[0]))

    # -- reading a peer's image: who may ---------------------------------------------------

    def sign(self, digest: str, holder: str, at: float | None = None) -> str:
        """The header value that lets this SP read ``digest`` from the SP at ``holder`` (its
        URL as recorded), once, now (or ``at``)."""
        stamp = int(time.time() if at is None else at)
        nonce = secrets.token_hex(16)
        return f"{stamp} {nonce} {self._mac(digest, holder, stamp, nonce)}"

    def verify(self, digest: str, value: str | None) -> str | None:
        """Why a request to this SP for ``digest`` with this header value is refused; None: it
        is not (and the same value is refused from now on)."""
        if not value:
            return f"no {AUTH_HEADER} header"
        parts = value.split()
        if len(parts) != 3 or not parts[0].isdigit() or len(parts[1]) != 32:
            return f"{AUTH_HEADER} is not 'TIME NONCE HMAC'"
        stamp, nonce, mac = int(parts[0]), parts[1], parts[2].lower()
        clock = time.time()
        if abs(clock - stamp) > self.max_skew:
            return f"{AUTH_HEADER}'s time is more than {self.max_skew:.0f} s from this SP's clock"
        if not hmac.compare_digest(mac, self._mac(digest, self.url, stamp, nonce)):
            return f"{AUTH_HEADER} does not match this registry's secret and this SP's URL"
        if not self._seen.add(nonce, stamp + self.max_skew, clock):
            return f"{AUTH_HEADER} was used before: each request signs anew"
        return None

    def _mac(self, digest: str, holder: str, stamp: int, nonce: str) -> str:
        message = f"sha256:{digest}\n{holder}\n{stamp}\n{nonce}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    # -- what this SP holds ----------------------------------------------------------------

    def start(self, url: str, held: dict[str, int]) -> None:
        """This SP listens (for its peers) at ``url`` and holds exactly ``held`` (digest:
        size): recorded as such, and rows of images it no longer holds removed."""
        self.url = url
        rows = self._registry.query("SELECT sha256 FROM image_holders WHERE holder = ?", (url,))
        gone = [str(r[0]) for r in rows if str(r[0]) not in held]
        with self._registry.transaction() as db:
            if gone:
                db.executemany(
                    "DELETE FROM image_holders WHERE sha256 = ? AND holder = ?",
                    [(digest, url) for digest in gone],
                )
            if held:
                db.executemany(
                    upsert("image_holders", COLUMNS, "sha256, holder"),
                    [self._row(digest, size) for digest, size in held.items()],
                )
        log.info("%d VM image(s) held here, recorded for the SPs sharing the registry", len(held))

    def hold(self, images: Iterable[tuple[str, int]]) -> None:
        """This SP took these images (digest, size) in: a publish, or a fetch from a peer."""
        rows = [self._row(digest, size) for digest, size in images]
        if not self.url or not rows:
            return
        with self._registry.transaction() as db:
            db.executemany(upsert("image_holders", COLUMNS, "sha256, holder"), rows)

    def _row(self, digest: str, size: int) -> tuple[str, str, str, int, str]:
        return (digest, self.url, self._registry.instance, size, now().isoformat())

    def drop(self, digest: str, holder: str) -> None:
        """``holder`` does not hold ``digest`` (any more): it said so."""
        with self._registry.transaction() as db:
            db.execute(
                "DELETE FROM image_holders WHERE sha256 = ? AND holder = ?", (digest, holder)
            )

    # -- who else holds one ----------------------------------------------------------------

    def holders(self, digest: str) -> list[Holder]:
        """The other SPs recorded as holding ``digest`` that are running now."""
        rows = self._registry.query(
            "SELECT holder, instance, size FROM image_holders WHERE sha256 = ? AND holder <> ?",
            (digest, self.url),
        )
        found = [Holder(str(r[0]), str(r[1]), int(r[2])) for r in rows]
        alive = self._registry.alive([h.instance for h in found])
        return [h for h in found if h.instance in alive]

    def recorded(self, digest: str) -> list[Holder]:
        """Every SP recorded as holding ``digest``, running or not (what the fault names)."""
        rows = self._registry.query(
            "SELECT holder, instance, size FROM image_holders WHERE sha256 = ? ORDER BY since",
            (digest,),
        )
        return [Holder(str(r[0]), str(r[1]), int(r[2])) for r in rows]
