"""``python -m dynasoar`` is the ``dynasoar`` command."""

from dynasoar.cli import main

raise SystemExit(main())
