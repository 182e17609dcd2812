"""The registry on a shared PostgreSQL database (``sp --registry postgresql://...``), through
psycopg 3: several SPs share it, active-active. An existing, replicated database is the
consensus; nothing of ours is.

Three connections per SP process, each for one job:

- *queries*: every read and transaction, one at a time (as SQLite's one connection);
- *locks*: session advisory locks, which PostgreSQL frees when the session ends, so a
  killed SP lets go of what it held at once: the cross-SP single flight of a deployment, the
  control loop's leadership, and the lock that says this SP instance is alive;
- *listen*: a thread waiting for NOTIFY ``dynasoar``, the changes other SPs announce.

A connection that fails is replaced on its next use; while the server cannot be reached at
all, uses fail at once (:class:`~dynasoar.errors.RegistryUnavailable`) rather than wait,
retrying a connection at most every ``RETRY_SECONDS``."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from dynasoar.provider.database import Change, Connection, Database, lock_key, unavailable

log = logging.getLogger(__name__)

CHANNEL = "dynasoar"
CONNECT_TIMEOUT = 3
RETRY_SECONDS = 0.5
#: Server-side bounds on any one statement, so that no call waits on the database for long.
OPTIONS = (
    "-c statement_timeout=10000 -c lock_timeout=5000 "
    "-c idle_in_transaction_session_timeout=30000"
)
#: A dead server or network is noticed within seconds, not at the kernel's TCP timeout.
KEEPALIVES = dict(keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=2)


def conninfo(url: str, name: str, instance: str = "", **more: str | int) -> str:
    """The connection string: the operator's URL with our bounds and name added. The name
    (``application_name``, in ``pg_stat_activity``) says which SP instance a session is
    and which of its jobs, so that an operator can tell the SPs' sessions apart."""
    who = f"{instance} {name}" if instance else name
    return make_conninfo(
        url,
        connect_timeout=CONNECT_TIMEOUT,
        application_name=f"dynasoar-sp {who}",
        **KEEPALIVES,
        **more,
    )
#: Failures of the connection itself (the others, a constraint say, are the statement's).
LOST = (psycopg.OperationalError, psycopg.InterfaceError)

_TYPES = [
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
]
_sql_cache: dict[str, str] = {}


def translate(sql: str) -> str:
    """``?`` placeholders to psycopg's ``%s`` (a literal ``%`` doubled)."""
    done = _sql_cache.get(sql)
    if done is None:
        if len(_sql_cache) > 2048:
            _sql_cache.clear()
        done = _sql_cache[sql] = sql.replace("%", "%%").replace("?", "%s")
    return done


def translate_ddl(ddl: str) -> str:
    for pattern, replacement in _TYPES:
        ddl = pattern.sub(replacement, ddl)
    return ddl


class _Translating:
    """A psycopg connection as the registry's SQL expects it (``?`` placeholders)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[object] = ()) -> Any:
        return self._conn.execute(translate(sql), list(args))

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> Any:
        with self._conn.cursor() as cursor:
            cursor.executemany(translate(sql), [list(r) for r in rows])
            return cursor


class _Session:
    """One connection, made on first use and again after it fails; not while the server
    is known to be unreachable (then at most every RETRY_SECONDS)."""

    def __init__(self, url: str, name: str, instance: str) -> None:
        self._url = url
        self._name = name
        self._instance = instance
        self.conn: psycopg.Connection[Any] | None = None
        self._failed_at = 0.0
        self.lock = threading.RLock()
        #: Counts new connections: a session-scoped state (locks, LISTEN) is gone when it moves.
        self.generation = 0

    def get(self) -> psycopg.Connection[Any]:
        if self.conn is not None and not self.conn.closed:
            return self.conn
        if time.monotonic() - self._failed_at < RETRY_SECONDS:
            raise unavailable(f"{self._name}: no connection", ConnectionError("retrying shortly"))
        try:
            self.conn = psycopg.connect(
                conninfo(self._url, self._name, self._instance, options=OPTIONS), autocommit=True
            )
        except LOST as exc:
            self._failed_at = time.monotonic()
            raise unavailable(f"{self._name}: connecting", exc) from exc
        self.generation += 1
        return self.conn

    def lost(self, exc: BaseException) -> Exception:
        """The connection failed: dropped, to be made again on the next use."""
        self._failed_at = time.monotonic()
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # closing a broken connection may complain; it is gone anyway
                pass
        self.conn = None
        return unavailable(self._name, exc)

    def close(self, release_locks: bool = False) -> None:
        with self.lock:
            if self.conn is not None:
                if release_locks and not self.conn.closed:
                    # The server frees a closed session's locks only once its backend has
                    # noticed; freed here, another SP sees this one stopped the moment it has.
                    try:
                        self.conn.execute("SELECT pg_advisory_unlock_all()")
                    except Exception as exc:  # gone already: so are its locks
                        log.info("releasing %s's locks: %s", self._name, exc)
                self.conn.close()
                self.conn = None


class PostgresDatabase(Database):
    kind = "postgresql"
    shared = True
    errors = (psycopg.Error,)

    def __init__(self, url: str, instance: str = "") -> None:
        """``instance``: the SP instance using it, in its sessions' names."""
        self._queries = _Session(url, "queries", instance)
        self._locks = _Session(url, "locks", instance)
        self._url = url
        self._instance = instance
        #: Locks this process holds, and the locks connection's generation they were taken on.
        self._held: dict[str, int] = {}
        self._listening: threading.Thread | None = None
        self._closing = threading.Event()
        with self._queries.lock:
            self._queries.get()  # fail at start, in the operator's words, if it is unreachable

    # -- queries ---------------------------------------------------------------------------

    def script(self, ddl: str) -> None:
        with self.transaction() as db:
            # SPs starting together would race creating the same tables: one at a time.
            db.execute("SELECT pg_advisory_xact_lock(?)", (lock_key("dynasoar:schema"),))
            for statement in translate_ddl(ddl).split(";"):
                if statement.strip():
                    db.execute(statement)

    def columns(self, table: str) -> set[str]:
        rows = self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "AND table_schema = current_schema()",
            (table,),
        )
        return {str(r[0]) for r in rows}

    def add_column(self, table: str, column: str, declaration: str) -> None:
        if self.has_table(table):
            with self.transaction() as db:
                db.execute(
                    f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} "
                    + translate_ddl(declaration)
                )

    def has_table(self, table: str) -> bool:
        return bool(self.columns(table))

    def query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        session = self._queries
        with session.lock:
            for attempt in (1, 2):
                conn = session.get()
                try:
                    return list(conn.execute(translate(sql), list(args)).fetchall())
                except LOST as exc:
                    error = session.lost(exc)
                    if attempt == 2:
                        raise error from exc
                    # a connection that died while idle (a server restart): once more, afresh
                    session._failed_at = 0.0
        raise AssertionError("unreachable")

    def transaction(self) -> AbstractContextManager[Connection]:
        return self._tx()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        session = self._queries
        with session.lock:
            conn = self._begin(session)
            try:
                yield _Translating(conn)
            except LOST as exc:
                raise session.lost(exc) from exc
            except BaseException:
                try:
                    conn.execute("ROLLBACK")
                except LOST as exc:
                    session.lost(exc)
                raise
            try:
                conn.execute("COMMIT")
            except LOST as exc:
                raise session.lost(exc) from exc

    def _begin(self, session: _Session) -> psycopg.Connection[Any]:
        for attempt in (1, 2):
            conn = session.get()
            try:
                conn.execute("BEGIN")
                return conn
            except LOST as exc:
                # Nothing was done yet: a connection that died while idle is made again.
                error = session.lost(exc)
                if attempt == 2:
                    raise error from exc
                session._failed_at = 0.0
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._closing.set()
        self._queries.close()
        self._locks.close(release_locks=True)
        if self._listening is not None:
            self._listening.join(timeout=3.0)

    # -- locks -----------------------------------------------------------------------------

    def _lock_query(self, sql: str, args: Sequence[object]) -> Any:
        session = self._locks
        with session.lock:
            for attempt in (1, 2):
                conn = session.get()
                self._forget_lost_locks()
                try:
                    return conn.execute(sql, list(args)).fetchone()
                except LOST as exc:
                    self._held.clear()  # the session is gone, and every lock it held
                    error = session.lost(exc)
                    if attempt == 2:
                        raise error from exc
                    session._failed_at = 0.0  # once more, on a new session
        raise AssertionError("unreachable")

    def _forget_lost_locks(self) -> None:
        generation = self._locks.generation
        for name in [n for n, g in self._held.items() if g != generation]:
            log.warning("the registry connection was lost, and with it the lock %s", name)
            del self._held[name]

    def try_lock(self, name: str) -> bool:
        if name in self._held:
            return False
        row = self._lock_query("SELECT pg_try_advisory_lock(%s)", (lock_key(name),))
        if row is not None and row[0]:
            self._held[name] = self._locks.generation
            return True
        return False

    def unlock(self, name: str) -> None:
        if self._held.pop(name, None) is None:
            return
        try:
            self._lock_query("SELECT pg_advisory_unlock(%s)", (lock_key(name),))
        except Exception as exc:  # the connection is gone: so is the lock
            log.info("unlocking %s: %s", name, exc)

    def holds(self, name: str) -> bool:
        if name not in self._held:
            return False
        try:
            self._lock_query("SELECT 1", ())
        except Exception:
            return False
        return name in self._held

    def held(self, names: Sequence[str]) -> set[str]:
        keys = {lock_key(n): n for n in names}
        if not keys:
            return set()
        rows = self.query(
            "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted AND objsubid = 1"
        )
        return {keys[int(r[0])] for r in rows if int(r[0]) in keys}

    # -- changes ---------------------------------------------------------------------------

    def announce(self, change: Change) -> None:
        try:
            self.query("SELECT pg_notify(?, ?)", (CHANNEL, f"{change[0]}\t{change[1]}"))
        except Exception as exc:  # the others reload everything after their own reconnection
            log.info("could not announce %s: %s", change, exc)

    def listen(self, on_change: Callable[[Change | None], None]) -> None:
        thread = threading.Thread(
            target=self._listen, args=(on_change,), name="registry-listen", daemon=True
        )
        self._listening = thread
        thread.start()

    def _listen(self, on_change: Callable[[Change | None], None]) -> None:
        first = True
        info = conninfo(self._url, "listen", self._instance)
        while not self._closing.is_set():
            try:
                with psycopg.connect(info, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if not first:
                        on_change(None)  # what was said while we were not listening
                    first = False
                    while not self._closing.is_set():
                        for note in conn.notifies(timeout=1.0, stop_after=256):
                            kind, _, key = note.payload.partition("\t")
                            on_change((kind, key))
                        conn.execute("SELECT 1")  # a dead server shows here, not in a wait
            except LOST as exc:
                if not self._closing.is_set():
                    log.warning("listening to the registry: %s; reconnecting", exc)
                    self._closing.wait(1.0)
