"""The experiment's tests need what the experiment needs: root, iproute2, tc and iptables."""

from __future__ import annotations

import pytest

from dynasoar.experiment import check_environment

PROBLEM = check_environment()
needs_network = pytest.mark.skipif(PROBLEM is not None, reason=f"experiment: {PROBLEM}")
