"""Where the registry keeps its tables: an embedded SQLite file (one SP), or a shared PostgreSQL
database (several SPs, :mod:`.postgres`). The registry and the modules that keep tables beside
it (usage, deliveries) write one SQL for both: ``?`` placeholders, ``INSERT ... ON CONFLICT``
upserts, and a schema whose column types are translated per database (``BLOB``, ``REAL``,
``INTEGER``). Each database also answers the few questions several SPs sharing it need: a
named lock held across processes (single flight, leadership), whether an SP instance is alive,
and telling the others what changed.

Every connection-level failure is :class:`~dynasoar.errors.RegistryUnavailable`; the database
reconnects by itself on the next use."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol, cast

from dynasoar.errors import RegistryUnavailable


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What a transaction hands its user: a DB-API connection in the ``?`` dialect."""

    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> Any: ...


#: What another SP changed, as it says: (kind, key) e.g. ("deployment", id), ("host", address),
#: ("route", service name).
Change = tuple[str, str]


def lock_key(name: str) -> int:
    """A named lock's number (PostgreSQL advisory locks are numbered): positive, 63 bits."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest()) >> 1


class Database:
    """The interface the registry uses; :class:`SqliteDatabase` and ``PostgresDatabase``."""

    #: "sqlite" or "postgresql"
    kind = ""
    #: Several SP processes may share it (their in-memory views must follow each other's).
    shared = False
    #: Driver errors that are not about reaching the database (a constraint, a bug).
    errors: tuple[type[BaseException], ...] = ()

    def script(self, ddl: str) -> None:
        raise NotImplementedError

    def columns(self, table: str) -> set[str]:
        raise NotImplementedError

    def add_column(self, table: str, column: str, declaration: str) -> None:
        """A column added since ``table`` was first created (nothing if it is there)."""
        raise NotImplementedError

    def has_table(self, table: str) -> bool:
        raise NotImplementedError

    def query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- several SPs -------------------------------------------------------------------------

    def try_lock(self, name: str) -> bool:
        """Take the named lock if free (held until :meth:`unlock` or this process ends)."""
        raise NotImplementedError

    def unlock(self, name: str) -> None:
        raise NotImplementedError

    def holds(self, name: str) -> bool:
        """Whether this process still holds the named lock (a lost connection loses it)."""
        raise NotImplementedError

    def held(self, names: Sequence[str]) -> set[str]:
        """Which of the named locks any process holds."""
        raise NotImplementedError

    def announce(self, change: Change) -> None:
        """Tell the other SPs sharing the database what changed (after it is committed)."""

    def listen(self, on_change: Callable[[Change | None], None]) -> None:
        """Call ``on_change`` (from another thread) with each change another SP announces;
        ``None`` when changes may have been missed (a reconnection): reload everything."""


class SqliteDatabase(Database):
    """One SP's registry file. Its locks are this process's own: only one SP uses the file."""

    kind = "sqlite"
    errors = (sqlite3.Error,)

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.RLock()
        self._locks: set[str] = set()

    def script(self, ddl: str) -> None:
        with self._lock:
            self._db.executescript(ddl)

    def columns(self, table: str) -> set[str]:
        with self._lock:
            return {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}

    def add_column(self, table: str, column: str, declaration: str) -> None:
        with self._lock:
            columns = self.columns(table)
            if columns and column not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def has_table(self, table: str) -> bool:
        return bool(
            self.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        )

    def query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    def transaction(self) -> AbstractContextManager[Connection]:
        return self._tx()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield cast(Connection, self._db)  # the same calls, typeshed's stricter types
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def try_lock(self, name: str) -> bool:
        with self._lock:
            if name in self._locks:
                return False
            self._locks.add(name)
            return True

    def unlock(self, name: str) -> None:
        with self._lock:
            self._locks.discard(name)

    def holds(self, name: str) -> bool:
        return name in self._locks

    def held(self, names: Sequence[str]) -> set[str]:
        return {n for n in names if n in self._locks}


def open_database(where: str | Path, instance: str = "") -> Database:
    """``postgresql://...`` (or ``postgres://``): a shared PostgreSQL database;
    ``sqlite:///PATH`` (read as a file: URL is, so ``sqlite:///var/x.sqlite`` names
    ``/var/x.sqlite``) or a plain path: an SQLite file. ``instance``: the SP instance that
    opens it (named in a shared database's sessions)."""
    text = str(where)
    if text.startswith(("postgresql://", "postgres://")):
        from dynasoar.provider.postgres import PostgresDatabase  # psycopg only when asked

        return PostgresDatabase(text, instance)
    if text.startswith("sqlite:///"):
        text = "/" + text[len("sqlite:///") :].lstrip("/")
    return SqliteDatabase(Path(text))


def unavailable(what: str, exc: BaseException) -> RegistryUnavailable:
    why = str(exc).strip() or type(exc).__name__
    return RegistryUnavailable(
        f"the registry's database cannot be reached ({what}: {why}); deployments already "
        "known are still used, and this can be retried shortly"
    )
