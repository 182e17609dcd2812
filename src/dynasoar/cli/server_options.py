"""Every option of ``dynasoar sp`` and ``dynasoar hp``, in one table each: flag, config file
section and key, environment variable (``DYNASOAR_`` + the flag's name), default and help.
:mod:`dynasoar.cli.config` makes flags of them and resolves their values; docs/operating.md
lists them."""

from __future__ import annotations

from pathlib import Path

from dynasoar.cli.argtypes import (
    count,
    label,
    log_size,
    number,
    positive,
    positive_int,
    public_url,
    registry_url,
    seconds,
    sender_status,
    show_label,
    show_site,
    show_size,
    site,
    size_arg,
    tcp_port,
    url,
)
from dynasoar.cli.config import Option
from dynasoar.provider.heartbeats import DEFAULT_RATE

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


def _server(port: int, data_help: str) -> list[Option]:
    return [
        Option(
            "host",
            "server",
            "127.0.0.1",
            "the address to listen on (0.0.0.0: every IPv4 address)",
            metavar="ADDRESS",
        ),
        Option(
            "port",
            "server",
            port,
            "the TCP port to listen on (0: any free port; printed on start)",
            parse=tcp_port,
            metavar="PORT",
        ),
        Option("data", "server", None, data_help, parse=Path, metavar="DIR", path=True),
        Option(
            "grace",
            "server",
            30.0,
            "on SIGTERM (or SIGHUP), how long messages in flight may take to finish; those "
            "still unanswered then get a dyn:ShuttingDown fault",
            parse=seconds,
            metavar="SECONDS",
        ),
        Option(
            "max-upload",
            "server",
            64 << 30,
            "largest MTOM upload (package plus images) accepted",
            parse=size_arg,
            metavar="SIZE",
            show=show_size,
        ),
        Option(
            "tls-cert",
            "server",
            None,
            "serve HTTPS with this certificate (with --tls-key)",
            parse=Path,
            metavar="PEM",
            path=True,
        ),
        Option(
            "tls-key",
            "server",
            None,
            "... and this private key",
            parse=Path,
            metavar="PEM",
            path=True,
        ),
        Option(
            "ca",
            "server",
            None,
            "verify https:// peers against this CA (a PEM file or directory)",
            parse=Path,
            metavar="PEM",
            path=True,
        ),
    ]


def _security(peers: str) -> list[Option]:
    return [
        Option(
            "key",
            "security",
            None,
            "sign messages with this private key (with --cert)",
            parse=Path,
            metavar="PEM",
            path=True,
        ),
        Option(
            "cert",
            "security",
            None,
            "... whose certificate this is",
            parse=Path,
            metavar="PEM",
            path=True,
        ),
        Option(
            "trust",
            "security",
            [],
            f"certificates (files or directories) of the {peers} to believe; with any, "
            "unsigned or untrusted messages are refused (repeatable)",
            parse=Path,
            metavar="PATH",
            repeat=True,
            path=True,
        ),
        Option(
            "max-skew",
            "security",
            300.0,
            "how far a signed message's timestamp may be off",
            parse=seconds,
            metavar="SECONDS",
        ),
    ]


LOG = [
    Option(
        "log-level",
        "log",
        "info",
        "the least important log lines written (info: one access line per message, hosts, "
        "deployments; warning: only what went wrong)",
        choices=LOG_LEVELS,
        metavar="LEVEL",
        file_key="level",
    ),
    Option(
        "log-format",
        "log",
        "text",
        "log lines as text, or as one JSON object each (for a log collector)",
        choices=LOG_FORMATS,
        metavar="FORMAT",
        file_key="format",
    ),
    Option(
        "verbose",
        "log",
        0,
        "-v: dynasoar's debug lines too; -vv: the libraries' own (spyne, zeep, ...) as well",
        count=True,
        short="-v",
    ),
]


def _addressing(service_provider: bool) -> list[Option]:
    """WS-Addressing and faults: the addresses an actor answers to, where replies may go,
    the HTTP status of SOAP 1.2 Sender faults."""
    options = [
        Option(
            "public-url",
            "addressing",
            [],
            "a URL this actor is reached at besides the one it listens on (behind a proxy, "
            "say); a message's wsa:To must name one of them (repeatable)"
            + ("" if service_provider else "; the first is the one registered with the SP"),
            parse=public_url,
            metavar="URL",
            repeat=True,
        ),
        Option(
            "soap12-sender-status",
            "addressing",
            400,
            "HTTP status of SOAP 1.2 Sender faults: 400, as SOAP 1.2 says, or 500 for clients "
            "that take a 400 for a transport error",
            parse=sender_status,
            metavar="400|500",
        ),
    ]
    if service_provider:
        options += [
            Option(
                "reply-to-allow",
                "addressing",
                [],
                "a ReplyTo / FaultTo address replies may be sent to, as a shell-style pattern "
                "matched against the whole URL, e.g. 'https://*.example.org/replies/*' "
                "(repeatable; none by default: such a message is refused with "
                "dyn:ReplyToNotAllowed)",
                metavar="PATTERN",
                repeat=True,
            ),
            Option(
                "reply-retry-for",
                "addressing",
                600.0,
                "how long a reply to a ReplyTo address is tried, with backoff, before it is "
                "given up",
                parse=seconds,
                metavar="SECONDS",
            ),
        ]
    return options


SP_OPTIONS: list[Option] = [
    *_server(
        8080,
        "the SP's state: registry, repository of packages and images "
        "(default: $XDG_DATA_HOME/dynasoar/sp, else ~/.local/share/dynasoar/sp)",
    ),
    Option(
        "hp",
        "provider",
        [],
        "a Host Provider this SP may use besides those that register themselves (repeatable)",
        parse=url,
        metavar="URL",
        repeat=True,
    ),
    Option(
        "deploy-timeout",
        "provider",
        120.0,
        "how long shipping a service to a host and its start may take",
        parse=seconds,
        metavar="SECONDS",
    ),
    Option(
        "call-timeout",
        "provider",
        60.0,
        "how long a message waits for a deployed service's reply, for services whose "
        "manifest sets no [service] call_timeout",
        parse=seconds,
        metavar="SECONDS",
    ),
    Option(
        "registry",
        "provider",
        None,
        "where the registry is kept: sqlite:///PATH (an SQLite file, this SP alone; "
        "sqlite:///var/lib/sp.sqlite names /var/lib/sp.sqlite), or "
        "postgresql://USER@HOST:PORT/DB, shared by every SP given the same URL: they relay to "
        "every deployment, deploy each service once between them and take turns at the "
        "control loop (default: sqlite:///DATA/registry.sqlite)",
        parse=registry_url,
        metavar="URL",
    ),
    Option(
        "peer-url",
        "provider",
        None,
        "the URL the other SPs sharing the registry reach this SP at, to fetch the VM images "
        "it holds (default: the URL it listens on; set it when they cannot reach that, as "
        "with --host 0.0.0.0)",
        parse=url,
        metavar="URL",
    ),
    Option(
        "heartbeat-rate",
        "provider",
        DEFAULT_RATE,
        "heartbeats a second this SP asks of the whole fleet: hosts are told to beat less "
        "often as the fleet grows",
        parse=positive,
        metavar="BEATS",
    ),
    Option(
        "keep-versions",
        "provider",
        5,
        "published versions kept per service, besides those routed or deployed",
        parse=positive_int,
        metavar="N",
    ),
    Option(
        "reconcile-interval",
        "provider",
        30.0,
        "how often the registry is compared with what every host runs",
        parse=seconds,
        metavar="SECONDS",
    ),
    Option(
        "placement",
        "provider",
        "least-loaded",
        "how to choose a host when a service's manifest does not say",
        choices=("least-loaded", "round-robin", "cheapest", "data-locality"),
        metavar="POLICY",
    ),
    Option(
        "scale-at",
        "provider",
        4.0,
        "messages in flight per replica, sustained, that add a replica of a stateless service",
        parse=positive,
        metavar="N",
    ),
    Option(
        "max-replicas",
        "provider",
        4,
        "replicas of a stateless service at most",
        parse=positive_int,
        metavar="N",
    ),
    Option(
        "idle-timeout",
        "provider",
        None,
        "undeploy a deployment with no traffic for this long (default: never)",
        parse=seconds,
        metavar="SECONDS",
    ),
    Option(
        "host-timeout",
        "provider",
        6.0,
        "mark a heartbeating host down after this long without a beat (or 3 of its beats, "
        "if longer)",
        parse=seconds,
        metavar="SECONDS",
    ),
    *_security("Host Providers"),
    Option(
        "consumer-trust",
        "security",
        [],
        "certificates of consumers whose signed messages services requiring signatures "
        "accept (repeatable)",
        parse=Path,
        metavar="PATH",
        repeat=True,
        path=True,
    ),
    *_addressing(service_provider=True),
    *LOG,
]

HP_OPTIONS: list[Option] = [
    *_server(
        0,
        "the HP's state: image cache, deployments, their logs (default: a scratch "
        "directory, removed when the HP stops)",
    ),
    Option(
        "sp",
        "host",
        None,
        "register with this Service Provider, and keep telling it this host is alive",
        parse=url,
        metavar="URL",
    ),
    Option(
        "service-host",
        "host",
        "127.0.0.1",
        "where deployed services listen; the SP must reach it",
        metavar="ADDRESS",
    ),
    Option(
        "heartbeat",
        "host",
        2.0,
        "how often to tell the SP this host is alive",
        parse=seconds,
        metavar="SECONDS",
    ),
    Option(
        "drain",
        "host",
        False,
        "when stopping, have the SP move this host's deployments to other hosts first (VM "
        "guests with their state, stateless code services; without it, the SP is told at once "
        "and redeploys on the next message)",
        switch=True,
    ),
    Option(
        "warm-runners",
        "host",
        2,
        "code services: keep N runner processes started, the service runtime imported, to "
        "hand packages to (faster cold starts; 0: start each afresh)",
        parse=count,
        metavar="N",
    ),
    Option(
        "capacity",
        "host",
        8,
        "deployments this host takes at once",
        parse=positive_int,
        metavar="N",
    ),
    Option(
        "price",
        "host",
        0.0,
        "price per CPU-second of the services run here (the bill; the cheapest placement "
        "policy reads it)",
        parse=number,
        metavar="PRICE",
    ),
    Option(
        "price-gib",
        "host",
        0.0,
        "price per GiB moved for a consumer: messages in and out, images shipped",
        parse=number,
        metavar="PRICE",
    ),
    Option(
        "site",
        "host",
        [],
        "a data site this host is near, and how near (repeatable)",
        parse=site,
        metavar="NAME[=DIST]",
        repeat=True,
        show=show_site,
    ),
    Option(
        "label",
        "host",
        [],
        "a label placement can require, e.g. trusted=yes (repeatable)",
        parse=label,
        metavar="NAME=VALUE",
        repeat=True,
        show=show_label,
    ),
    Option(
        "backend",
        "host",
        "process",
        "process: code packages only, each a sandboxed process; libvirt: VM images too, as "
        "libvirt/QEMU domains",
        choices=("process", "libvirt"),
        metavar="BACKEND",
    ),
    Option(
        "libvirt-uri",
        "host",
        "qemu:///system",
        "the libvirt connection VMs run on (--backend libvirt)",
        metavar="URI",
    ),
    Option(
        "libvirt-template",
        "host",
        None,
        "the libvirt domain XML template VMs are made from (default: deploy/libvirt/domain.xml)",
        parse=Path,
        metavar="XML",
        path=True,
    ),
    Option(
        "accel",
        "host",
        "tcg",
        "VM acceleration: TCG, KVM, or KVM if a probe boot succeeds (auto)",
        choices=("tcg", "kvm", "auto"),
        metavar="ACCEL",
    ),
    Option(
        "image-cache",
        "host",
        20 << 30,
        "evict least-recently-used VM images above this size",
        parse=size_arg,
        metavar="SIZE",
        show=show_size,
    ),
    Option(
        "log-bytes",
        "host",
        4 << 20,
        "each deployment's output log (a service's stdout and stderr, a VM's console) at "
        "most, rotated in two halves",
        parse=log_size,
        metavar="SIZE",
        show=show_size,
    ),
    Option(
        "kept-logs",
        "host",
        3,
        "logs kept of a service's ended deployments (failed, undeployed, died), the latest N",
        parse=count,
        metavar="N",
    ),
    *_security("Service Providers"),
    *_addressing(service_provider=False),
    *LOG,
]
