"""The sample Echo as the tests here ship it to a real Host Provider: copied out of the tree
(its __pycache__ left behind) and packed as ``dynasoar publish`` packs it."""

from __future__ import annotations

import shutil
from pathlib import Path

from dynasoar.consumer.publish import Upload, prepare
from dynasoar.paths import samples_dir


def echo_upload(scratch: Path) -> Upload:
    package = scratch / "echo"
    shutil.copytree(samples_dir() / "echo", package, ignore=shutil.ignore_patterns("__pycache__"))
    upload = prepare(package, scratch / "upload")
    assert upload.manifest is not None
    return upload
