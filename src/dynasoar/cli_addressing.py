"""The ``dynasoar sp`` / ``hp`` options about WS-Addressing and faults: the addresses an actor
answers to, where replies may go, and the HTTP status of SOAP 1.2 Sender faults."""

from __future__ import annotations

import argparse
from typing import Any

from dynasoar.addresses import Base


def _public_url(text: str) -> str:
    try:
        Base.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def add_addressing_args(p: argparse.ArgumentParser, *, service_provider: bool) -> None:
    p.add_argument(
        "--public-url",
        action="append",
        default=[],
        type=_public_url,
        metavar="URL",
        help="a URL this actor is reached at besides the one it listens on (behind a proxy, "
        "say); a message's wsa:To must name one of them (repeatable)"
        + ("" if service_provider else "; the first is the one registered with the SP"),
    )
    p.add_argument(
        "--soap12-sender-status",
        type=int,
        choices=(400, 500),
        default=400,
        help="HTTP status of SOAP 1.2 Sender faults: 400, as SOAP 1.2 says (default), or 500 "
        "for clients that take a 400 for a transport error",
    )
    if not service_provider:
        return
    p.add_argument(
        "--reply-to-allow",
        action="append",
        default=[],
        metavar="PATTERN",
        help="a ReplyTo / FaultTo address replies may be sent to, as a shell-style pattern "
        "matched against the whole URL, e.g. 'https://*.example.org/replies/*' (repeatable; "
        "none by default: such a message is refused with dyn:ReplyToNotAllowed)",
    )
    p.add_argument(
        "--reply-retry-for",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="how long a reply to a ReplyTo address is tried, with backoff, before it is given "
        "up (default 600)",
    )


def addressing_config(args: argparse.Namespace, *, service_provider: bool) -> dict[str, Any]:
    """The ProviderConfig / HostConfig fields these options set."""
    config: dict[str, Any] = {
        "public_urls": list(args.public_url),
        "soap12_sender_status": args.soap12_sender_status,
    }
    if service_provider:
        if args.reply_retry_for <= 0:
            raise SystemExit("dynasoar: --reply-retry-for must be positive")
        config["reply_to_allow"] = list(args.reply_to_allow)
        config["reply_retry_for"] = args.reply_retry_for
    return config
