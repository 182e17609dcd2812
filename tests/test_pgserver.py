"""The tests' PostgreSQL (dynasoar.pgserver): a cluster that cannot be made leaves nothing."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest

from dynasoar import pgserver


def _clusters() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("dynasoar-pg-*"))


def test_a_cluster_whose_server_cannot_start_leaves_no_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    try:
        pgserver.bindir()
    except pgserver.PostgresUnavailable as exc:
        pytest.skip(str(exc))
    before = _clusters()
    with socket.socket() as taken:  # the port the new cluster is given is in use
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(pgserver, "_free_port", lambda: taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="pg_ctl"):
            pgserver.PostgresServer.create()
    assert _clusters() <= before  # initdb had made ~40 MB of it
