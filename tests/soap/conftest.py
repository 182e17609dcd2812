"""Key pairs for the WS-Security tests, made once per session with dynasoar.keys."""

from __future__ import annotations

import pytest
from wss_support import Keys, make_keys

from dynasoar.soap.security import TrustStore


@pytest.fixture(scope="session")
def sp(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"), "sp-1")


@pytest.fixture(scope="session")
def sp2(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"), "sp-2")


@pytest.fixture(scope="session")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"), "rogue")


@pytest.fixture(scope="session")
def trust(sp: Keys, sp2: Keys) -> TrustStore:
    return TrustStore.from_paths([sp.cert, sp2.cert])
