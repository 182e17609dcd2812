"""The signatures bench measures what it says: messages signed both ways verify, and it prints
its four figures (no timing is asserted: speed is for ``dynasoar bench``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynasoar.bench.signatures import ENGINES, measure, signature_cost


def test_the_bench_prints_sign_and_verify_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signature_cost(tmp_path, messages=5, rounds=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("(s) signatures: a signed Status request, 5 messages x 1 rounds")
    labels = [line.strip().split("  ")[0] for line in lines[2:]]
    assert labels == [
        "sign + serialize (ours)",
        "sign + serialize (xmlsec's)",
        "parse + verify",
        "xmlsec's signing / ours",
    ]


def test_both_engines_are_measured_and_the_messages_verify(tmp_path: Path) -> None:
    signing, verifying = measure(tmp_path, messages=3, rounds=2)  # verify raises if one fails
    assert set(signing) == set(ENGINES)
    assert all(value > 0 for value in [*signing.values(), verifying])
