"""Where dynasoar's things live: the ``wsdl/`` contracts and the ``deploy/`` samples on disk,
and the URL paths of the two management ports (part of the outside contract).

The files sit at the top of the source tree (the project is installed editable); the
environment variables point elsewhere when needed."""

from __future__ import annotations

import os
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[2]

#: The Service Provider's management port, on the SP's base URL.
PROVIDER_PORT = "/dynasoar/ServiceProvider"
#: The Host Provider's port, on the HP's base URL.
HOST_PORT = "/dynasoar/HostProvider"


def contracts_dir() -> Path:
    return Path(os.environ.get("DYNASOAR_WSDL_DIR") or SOURCE_ROOT / "wsdl")


def samples_dir() -> Path:
    return Path(os.environ.get("DYNASOAR_SAMPLES_DIR") or SOURCE_ROOT / "deploy" / "services")
