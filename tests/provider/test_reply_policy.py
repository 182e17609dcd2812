"""The operator's allow-list of reply addresses (``--reply-to-allow``): nothing by default,
shell-style patterns on the whole URL, http(s) only, no credentials in the URL."""

from __future__ import annotations

import pytest

from dynasoar import ns
from dynasoar.errors import ReplyToNotAllowed
from dynasoar.provider.reply_policy import ReplyDestinations

ALLOWED = ReplyDestinations(["https://*.example.org/replies/*", "http://127.0.0.1:*/*"])


def test_nothing_is_allowed_by_default() -> None:
    reason = ReplyDestinations().refusal("http://127.0.0.1:8000/r")
    assert reason is not None and "--reply-to-allow" in reason


@pytest.mark.parametrize(
    "address",
    [
        "https://a.example.org/replies/1",
        "https://b.c.example.org/replies/x?y=1",
        "http://127.0.0.1:9/r",
    ],
)
def test_allowed(address: str) -> None:
    assert ALLOWED.refusal(address) is None
    ALLOWED.check((ns.WSA, "ReplyTo"), address)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("https://example.org/replies/1", "matches none"),
        ("http://a.example.org/replies/1", "matches none"),
        ("https://user:pw@a.example.org/replies/1", "credentials"),
        ("mailto:replies@example.org", "http"),
        ("ftp://127.0.0.1:9/r", "http"),
        ("http://127.0.0.1:notaport/r", "not a URL"),
    ],
)
def test_refused(address: str, why: str) -> None:
    reason = ALLOWED.refusal(address)
    assert reason is not None and why in reason
    with pytest.raises(ReplyToNotAllowed) as info:
        ALLOWED.check((ns.WSA, "FaultTo"), address)
    assert info.value.subsubcode == (ns.DYN, "ReplyToNotAllowed")
    assert info.value.reason.startswith("wsa:FaultTo: ")
