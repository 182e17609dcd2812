"""Taking a deployment's figures for the bill (:mod:`.usage`): the increase of what its host
reports over what was last taken, by this SP or another sharing the registry, recorded as
taken in one compare and set, so that two SPs asking the host at the same moment cannot both
take the same increase (the one that loses reads the figures again).

What was taken of each deployment is kept (``deployment_usage``) for as long as its host can
report it: a host keeps an ended deployment's final figures for a while (the last 1,024
ended), and a row forgotten sooner would bill them again in full. A row goes once its host's
report no longer names the deployment (the host forgot it: it can never report it again), the
registry holds no deployment of that id, and it was last taken over ``PRUNE_AFTER`` ago (a
row another SP wrote after the report was made is younger). So the table holds what runs and
what ended lately, not every deployment ever made."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from dynasoar.consumer.host_client import DeploymentUsage
from dynasoar.provider.registry import Registry

log = logging.getLogger(__name__)

#: Reads of a deployment's figures before its increase is taken, when other SPs keep taking
#: it first (each try that loses means another SP took some).
TAKE_TRIES = 5

#: What a take of a deployment's figures gives: its owner, the increase (CPU s, memory GiB-s,
#: image bytes) and consumer -> wall seconds of their messages there since the last take.
Taken = tuple[str, float, float, int, dict[str, float]]

#: Seconds since its figures were last taken before the row of a deployment its host no longer
#: reports (and the registry no longer holds) is forgotten.
PRUNE_AFTER = 3600.0

#: What :func:`take` gives when other SPs took the figures first every time: its host is to
#: be asked again at the next poll.
LEFT: Final = "left"


def take(
    registry: Registry, host: str, now: DeploymentUsage, owner: Callable[[], str]
) -> Taken | Literal["left"] | None:
    """The increase of a deployment's figures over those last taken, recorded as taken: (its
    owner, CPU s, memory GiB-s, image bytes, and the wall time of each consumer's messages
    there since, through every SP), None if nothing is new, :data:`LEFT` if other SPs kept
    taking it first. ``owner`` names whom it was deployed for (asked once, when no SP has
    taken its figures yet). A registry that fails raises (nothing is then recorded taken)."""
    fallback: str | None = None
    for _ in range(TAKE_TRIES):
        rows = registry.query(
            "SELECT consumer, cpu_seconds, memory_gib_seconds, image_bytes "
            "FROM deployment_usage WHERE id = ?",
            (now.id,),
        )
        if rows:
            who = str(rows[0][0])
            before = (float(rows[0][1]), float(rows[0][2]), int(rows[0][3]))
        else:
            if fallback is None:  # (asked once: it forgets whom it deployed for)
                fallback = owner()
            who = fallback
            before = (0.0, 0.0, 0)
        after = (
            max(now.cpu_seconds, before[0]),
            max(now.memory_gib_seconds, before[1]),
            max(now.image_bytes, before[2]),
        )
        if after == before and rows:
            if now.state == "ended":  # nothing more will come to share out
                with registry.transaction() as db:
                    db.execute("DELETE FROM deployment_walls WHERE deployment_id = ?", (now.id,))
            return None
        stamp = datetime.now(UTC).isoformat()
        with registry.transaction() as db:
            if rows:
                done = db.execute(
                    "UPDATE deployment_usage SET cpu_seconds = ?, memory_gib_seconds = ?, "
                    "image_bytes = ?, updated = ? WHERE id = ? AND cpu_seconds = ? "
                    "AND memory_gib_seconds = ? AND image_bytes = ?",
                    (*after, stamp, now.id, *before),
                ).rowcount
            else:
                done = db.execute(
                    "INSERT INTO deployment_usage (id, service, version, host, consumer, "
                    "cpu_seconds, memory_gib_seconds, image_bytes, updated) "
                    "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING",
                    (now.id, now.service, now.version, host, who, *after, stamp),
                ).rowcount
            if done == 1:  # the walls written so far are this increase's to share
                walls = db.execute(
                    "DELETE FROM deployment_walls WHERE deployment_id = ? "
                    "RETURNING consumer, seconds",
                    (now.id,),
                ).fetchall()
        if done == 1:
            increase = (after[0] - before[0], after[1] - before[1], after[2] - before[2])
            shares = {str(consumer): float(seconds) for consumer, seconds in walls}
            return (who, *increase, shares) if any(increase) else None
    log.warning(
        "the usage of %s changed under this SP %d times; left to the next poll",
        now.id,
        TAKE_TRIES,
    )
    return LEFT


def forget_unreported(
    registry: Registry,
    host: str,
    reported: Collection[str],
    live: Collection[str],
    older_than: float = PRUNE_AFTER,
) -> int:
    """Forget what was taken of ``host``'s deployments that its report (``reported``: the ids
    it names) and the registry (``live``) no longer hold, last taken over ``older_than`` s
    ago; how many rows went."""
    cutoff = (datetime.now(UTC) - timedelta(seconds=older_than)).isoformat()
    rows = registry.query(
        "SELECT id FROM deployment_usage WHERE host = ? AND updated < ?", (host, cutoff)
    )
    gone = [(str(r[0]),) for r in rows if str(r[0]) not in reported and str(r[0]) not in live]
    if gone:
        with registry.transaction() as db:
            db.executemany("DELETE FROM deployment_usage WHERE id = ?", gone)
        log.info("%d deployment(s) %s no longer reports left the usage ledger", len(gone), host)
    return len(gone)
