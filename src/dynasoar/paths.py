"""Where dynasoar's own files live: the ``wsdl/`` contracts and the ``deploy/`` samples.

They sit at the top of the source tree (the project is installed editable); the environment
variables point elsewhere when needed."""

from __future__ import annotations

import os
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[2]


def contracts_dir() -> Path:
    return Path(os.environ.get("DYNASOAR_WSDL_DIR") or SOURCE_ROOT / "wsdl")


def samples_dir() -> Path:
    return Path(os.environ.get("DYNASOAR_SAMPLES_DIR") or SOURCE_ROOT / "deploy" / "services")
