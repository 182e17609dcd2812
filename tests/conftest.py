"""Fixtures shared across the suite: a real PostgreSQL server (Debian's ``postgresql``, which
scripts/install-system.sh installs), started once per test session in a temporary directory,
and a fresh database in it per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from dynasoar.pgserver import PostgresServer, PostgresUnavailable


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer.create()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """A new, empty database on the session's server."""
    import psycopg

    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres.url.rsplit("/", 1)[0] + "/" + name
