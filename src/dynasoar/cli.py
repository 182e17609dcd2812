"""The ``dynasoar`` command: run the actors (``sp``, ``hp``) and act as their consumer
(``publish``, ``deploy``, ``undeploy``, ``status``, ``logs``, ``call``), plus ``demo`` and
``bench``."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import ssl
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dynasoar import __version__
from dynasoar.cli_addressing import add_addressing_args, addressing_config
from dynasoar.errors import DynasoarError

if TYPE_CHECKING:
    from dynasoar.soap.security import Policy, TrustStore

DEFAULT_SP = "http://127.0.0.1:8080"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    command: Callable[[argparse.Namespace], int] = args.func
    if getattr(args, "ca", None) is not None and args.command not in ("sp", "hp"):
        os.environ["DYNASOAR_CA"] = str(args.ca)  # every client library reads it from there
    from dynasoar.serve import StartupError

    try:
        return command(args)
    except StartupError as exc:
        print(f"dynasoar {args.command}: {exc}", file=sys.stderr)
        return 2
    except DynasoarError as exc:
        print(f"dynasoar {args.command}: {exc.reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynasoar", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dynasoar {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sp_default = os.environ.get("DYNASOAR_SP", DEFAULT_SP)

    p = sub.add_parser("sp", help="run a Service Provider")
    _server_args(p, 8080)
    p.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="URL",
        help="a Host Provider this SP may use (repeatable)",
    )
    p.add_argument("--deploy-timeout", type=float, default=120.0, metavar="SECONDS")
    p.add_argument(
        "--call-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long a message waits for a deployed service's reply, for services whose "
        "manifest sets no [service] call_timeout (default 60)",
    )
    p.add_argument(
        "--reconcile-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how often the registry is compared with what every host runs (default 30)",
    )
    p.add_argument(
        "--placement",
        default="least-loaded",
        choices=("least-loaded", "round-robin", "cheapest", "data-locality"),
        help="how to choose a host when a service's manifest does not say",
    )
    p.add_argument(
        "--scale-at",
        type=float,
        default=4.0,
        metavar="N",
        help="messages in flight per replica, sustained, that add a replica of a "
        "stateless service (default 4)",
    )
    p.add_argument(
        "--max-replicas",
        type=int,
        default=4,
        metavar="N",
        help="replicas of a stateless service at most (default 4)",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="undeploy a deployment with no traffic for this long (default: never)",
    )
    p.add_argument(
        "--host-timeout",
        type=float,
        default=6.0,
        metavar="SECONDS",
        help="mark a heartbeating host down after this long without a beat (or 3 of its "
        "beats, if longer; default 6)",
    )
    _upload_arg(p)
    _security_args(p, "Host Providers")
    p.add_argument(
        "--consumer-trust",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="certificates of consumers whose signed messages services requiring "
        "signatures accept (repeatable)",
    )
    add_addressing_args(p, service_provider=True)
    p.set_defaults(func=_run_sp)

    p = sub.add_parser("hp", help="run a Host Provider")
    _server_args(p, 0)
    p.add_argument("--backend", choices=("process", "libvirt"), default="process")
    p.add_argument("--libvirt-uri", default="qemu:///system")
    p.add_argument("--capacity", type=int, default=8, help="deployments this host takes")
    p.add_argument("--sp", metavar="URL", help="register with this Service Provider")
    p.add_argument(
        "--service-host",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="where deployed services listen; the SP must reach it (default 127.0.0.1)",
    )
    p.add_argument(
        "--heartbeat",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often to tell the SP this host is alive (default 2)",
    )
    p.add_argument(
        "--drain",
        action="store_true",
        help="when stopping, have the SP move this host's deployments to other hosts first "
        "(VM guests with their state, stateless code services; without it, the SP is told at "
        "once and redeploys on the next message)",
    )
    p.add_argument(
        "--warm-runners",
        type=_count,
        default=2,
        metavar="N",
        help="code services: keep N runner processes started, the service runtime imported, "
        "to hand packages to (faster cold starts; 0: start each afresh; default 2)",
    )
    p.add_argument(
        "--price",
        type=float,
        default=0.0,
        help="price per CPU-second of the services run here (the bill; placement's cheapest)",
    )
    p.add_argument(
        "--price-gib",
        type=float,
        default=0.0,
        metavar="PRICE",
        help="price per GiB moved for a consumer: messages in and out, images shipped",
    )
    p.add_argument(
        "--site",
        action="append",
        default=[],
        type=_site,
        metavar="NAME[=DIST]",
        help="a data site this host is near, and how near (repeatable)",
    )
    p.add_argument(
        "--label",
        action="append",
        default=[],
        type=_label,
        metavar="NAME=VALUE",
        help="a label placement can require, e.g. trusted=yes (repeatable)",
    )
    p.add_argument(
        "--accel",
        choices=("tcg", "kvm", "auto"),
        default="tcg",
        help="VM acceleration: TCG (default), KVM, or KVM if a probe boot succeeds",
    )
    p.add_argument(
        "--image-cache",
        type=size_arg,
        default=20 << 30,
        metavar="SIZE",
        help="evict least-recently-used VM images above this size (default 20G)",
    )
    p.add_argument(
        "--log-bytes",
        type=_log_size,
        default=4 << 20,
        metavar="SIZE",
        help="each deployment's output log (a service's stdout and stderr, a VM's console) "
        "at most, rotated in two halves (default 4M)",
    )
    p.add_argument(
        "--kept-logs",
        type=_count,
        default=3,
        metavar="N",
        help="logs kept of a service's ended deployments (failed, undeployed, died), "
        "the latest N (default 3)",
    )
    _upload_arg(p)
    _security_args(p, "Service Providers")
    add_addressing_args(p, service_provider=False)
    p.set_defaults(func=_run_hp)

    p = sub.add_parser("publish", help="upload a service package to an SP's repository")
    _ca_arg(p)
    p.add_argument("package", type=Path, help="a package directory, .zip or .tar.gz")
    p.add_argument("--sp", default=sp_default, metavar="URL")
    p.add_argument(
        "--no-rollout",
        action="store_true",
        help="keep the service's traffic where it is (the version is only kept); by default "
        "a deployed stateless service rolls out to it",
    )
    p.set_defaults(func=_publish)

    from dynasoar.consumer import mobility, usage, versions

    versions.add_commands(sub, sp_default)
    mobility.add_commands(sub, sp_default)
    usage.add_command(sub, sp_default)

    for name, help_text, what in (
        (
            "deploy",
            "deploy a service now (or, with --hp and no --sp, a package on disk "
            "straight to a Host Provider)",
            "a service name, or a package path with --hp",
        ),
        (
            "undeploy",
            "undeploy a service (all replicas, or one host's; with --hp and no --sp, "
            "a deployment id on that host)",
            "a service name, or a deployment id with --hp",
        ),
    ):
        p = sub.add_parser(name, help=help_text)
        _ca_arg(p)
        p.add_argument("name", help=what)
        p.add_argument("--sp", metavar="URL", help=f"the Service Provider (default {sp_default})")
        p.add_argument("--hp", metavar="URL", help="on this Host Provider")
        p.set_defaults(func=_deploy if name == "deploy" else _undeploy, sp_default=sp_default)

    p = sub.add_parser("status", help="services, deployments and hosts of an SP")
    _ca_arg(p)
    p.add_argument("--sp", default=sp_default, metavar="URL")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_status)

    p = sub.add_parser("logs", help="a service's output logs (stdout, stderr, VM console)")
    _ca_arg(p)
    p.add_argument("service")
    p.add_argument("--deployment", metavar="ID", help="this deployment's log only")
    p.add_argument("--follow", action="store_true", help="keep printing new output (Ctrl-C ends)")
    p.add_argument("--tail", type=_count, metavar="N", help="the last N lines of each log")
    p.add_argument("--sp", default=sp_default, metavar="URL")
    p.set_defaults(func=_logs)

    p = sub.add_parser("call", help="call an operation through its WSDL (zeep, WS-Addressing)")
    _ca_arg(p)
    p.add_argument("wsdl")
    p.add_argument("operation")
    p.add_argument("arguments", nargs="*", metavar="NAME=VALUE")
    p.add_argument("--soap12", action="store_true", help="use the WSDL's SOAP 1.2 port")
    p.add_argument("--key", type=Path, metavar="PEM", help="sign the message with this key")
    p.add_argument("--cert", type=Path, metavar="PEM", help="... whose certificate this is")
    p.set_defaults(func=_call)

    p = sub.add_parser("keys", help="make a key pair and certificate (signing, TLS)")
    p.add_argument("directory", type=Path, help="where to write NAME.key and NAME.crt")
    p.add_argument("--name", required=True, help="the certificate's common name (CN)")
    p.add_argument("--days", type=int, default=365, help="validity (default 365)")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.add_argument(
        "--host",
        action="append",
        default=None,
        metavar="NAME",
        help="a host name or address it serves TLS for (repeatable; default "
        "localhost and 127.0.0.1)",
    )
    p.set_defaults(func=_keys)

    p = sub.add_parser("demo", help="the whole story on loopback: 1 SP, 2 HPs, narrated")
    p.set_defaults(func=_demo)

    p = sub.add_parser("bench", help="benchmarks, printed as ratios measured side by side")
    p.add_argument(
        "which",
        nargs="?",
        choices=("experiment",),
        help="experiment: the Dynasoar experiment over an emulated network (docs/experiment.md)",
    )
    p.add_argument("--quick", action="store_true", help="shorter runs (a reduced grid)")
    p.add_argument("--out", type=Path, metavar="DIR", help="the experiment's CSVs and plots")
    p.set_defaults(func=_bench)
    return parser


def size_arg(text: str) -> int:
    """A size such as 512M, 20G or 1048576 (bytes)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (say 512M, 20G, ...)") from None


def _log_size(text: str) -> int:
    size = size_arg(text)
    if size < 8 << 10:
        raise argparse.ArgumentTypeError(f"{text!r} is too small for a log (at least 8K)")
    return size


def _count(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"not a count: {text!r}")
    return number


def _site(text: str) -> tuple[str, int]:
    from dynasoar.terms import parse_site

    try:
        return parse_site(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _label(text: str) -> tuple[str, str]:
    from dynasoar.terms import parse_label

    try:
        return parse_label(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ca_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ca",
        type=Path,
        metavar="PEM",
        help="verify https:// servers against this CA (default: $DYNASOAR_CA)",
    )


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if (args.tls_cert is None) != (args.tls_key is None):
        raise SystemExit("dynasoar: --tls-cert and --tls-key go together")
    if args.tls_cert is None:
        return None
    from dynasoar.tls import server_context

    return server_context(args.tls_cert, args.tls_key)


def _upload_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-upload",
        type=size_arg,
        default=64 << 30,
        metavar="SIZE",
        help="largest MTOM upload (package plus images) accepted (default 64G)",
    )


def _security_args(p: argparse.ArgumentParser, peers: str) -> None:
    p.add_argument("--key", type=Path, metavar="PEM", help="sign messages with this key")
    p.add_argument("--cert", type=Path, metavar="PEM", help="... whose certificate this is")
    p.add_argument(
        "--trust",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help=f"certificates (files or directories) of the {peers} to believe; "
        "with any, unsigned or untrusted messages are refused (repeatable)",
    )
    p.add_argument(
        "--max-skew",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how far a signed message's timestamp may be off (default 300)",
    )


def _security(args: argparse.Namespace) -> Policy:
    from dynasoar.soap.security import Credentials, Policy, TrustStore

    if (args.key is None) != (args.cert is None):
        raise SystemExit("dynasoar: --key and --cert go together")
    try:
        credentials = Credentials.load(args.key, args.cert) if args.key else None
        trust = TrustStore.from_paths(args.trust) if args.trust else None
    except (OSError, ValueError) as exc:
        raise SystemExit(f"dynasoar: {exc}") from None
    return Policy(credentials=credentials, trust=trust, max_skew=args.max_skew)


def _consumer_trust(args: argparse.Namespace) -> TrustStore | None:
    if not args.consumer_trust:
        return None
    from dynasoar.soap.security import TrustStore

    try:
        return TrustStore.from_paths(args.consumer_trust)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"dynasoar: {exc}") from None


def _server_args(p: argparse.ArgumentParser, port: int) -> None:
    p.add_argument("--tls-cert", type=Path, metavar="PEM", help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="... and this private key")
    p.add_argument("--ca", type=Path, metavar="PEM", help="verify https:// peers against this CA")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=port)
    p.add_argument("--data", type=Path, help="state directory")
    p.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM (or SIGHUP), how long messages in flight may take to finish; those "
        "still unanswered then get a dyn:ShuttingDown fault (default 30)",
    )
    p.add_argument("-v", "--verbose", action="store_true")


def _run_sp(args: argparse.Namespace) -> int:
    import asyncio

    from dynasoar.http import new_event_loop
    from dynasoar.provider.app import ProviderApp, ProviderConfig
    from dynasoar.provider.autoscaler import Scaling
    from dynasoar.serve import reexec, serve

    data = (
        args.data
        or Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "dynasoar/sp"
    )
    config = ProviderConfig(
        ca=args.ca,
        security=_security(args),
        consumer_trust=_consumer_trust(args),
        data=data,
        hosts=args.hp,
        deploy_timeout=args.deploy_timeout,
        call_timeout=args.call_timeout,
        max_upload_bytes=args.max_upload,
        placement=args.placement,
        scaling=Scaling(
            scale_at=args.scale_at,
            max_replicas=args.max_replicas,
            idle_timeout=args.idle_timeout,
            host_timeout=args.host_timeout,
            reconcile_interval=args.reconcile_interval,
        ),
        **addressing_config(args, service_provider=True),
    )
    tls = _tls_context(args)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        app = ProviderApp(config, loop)
        # SIGHUP: a graceful re-exec in place, with the listening socket kept open.
        outcome = loop.run_until_complete(
            serve("sp", args.host, args.port, app, grace=args.grace, tls=tls, reexec_on_hangup=True)
        )
    finally:
        loop.close()
    if outcome.restart is not None:
        reexec(outcome.restart)
    return 0


def _run_hp(args: argparse.Namespace) -> int:
    import asyncio

    from dynasoar.host.app import HostApp, HostConfig
    from dynasoar.http import new_event_loop
    from dynasoar.serve import serve
    from dynasoar.terms import HostTerms

    scratch = None
    data = args.data
    if data is None:  # an HP's state lives as long as its processes: a scratch directory
        scratch = data = Path(tempfile.mkdtemp(prefix="dynasoar-hp-"))
    try:
        app = HostApp(
            HostConfig(
                ca=args.ca,
                security=_security(args),
                data=data,
                backend=args.backend,
                capacity=args.capacity,
                service_provider=args.sp,
                libvirt_uri=args.libvirt_uri,
                accel=args.accel,
                image_cache_bytes=args.image_cache,
                max_upload_bytes=args.max_upload,
                terms=HostTerms(
                    args.price, tuple(args.site), tuple(args.label), price_gib=args.price_gib
                ),
                heartbeat=args.heartbeat,
                service_host=args.service_host,
                drain=args.drain,
                warm_runners=args.warm_runners,
                grace=args.grace,
                log_bytes=args.log_bytes,
                kept_logs=args.kept_logs,
                **addressing_config(args, service_provider=False),
            )
        )
        tls = _tls_context(args)
        loop = new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(
                serve("hp", args.host, args.port, app, grace=args.grace, tls=tls)
            )
        finally:
            loop.close()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _publish(args: argparse.Namespace) -> int:
    from dynasoar.consumer.progress import ProgressBar
    from dynasoar.consumer.provider_client import ProviderClient

    with ProgressBar(f"publishing {args.package.name}", stream=sys.stderr) as bar:
        info = ProviderClient(args.sp).publish(
            args.package, on_progress=bar.update, rollout=not args.no_rollout
        )
    print(
        f"published {info.name} {info.version} ({info.kind}, "
        f"{'stateless' if info.stateless else 'stateful'}, {info.size} bytes, "
        f"sha256 {info.sha256[:16]}…)"
    )
    shares = ", ".join(f"{v} {w}%" for v, w in info.traffic)
    print(
        f"traffic: {shares}"
        + (
            f" ({info.started} started, {info.retired} drained)"
            if info.started or info.retired
            else ""
        )
    )
    if info.note:
        print(info.note)
    return 0


def _direct(args: argparse.Namespace) -> bool:
    """No SP given, a host given: the consumer acts as its own Service Provider."""
    return args.sp is None and args.hp is not None and "DYNASOAR_SP" not in os.environ


def _deploy(args: argparse.Namespace) -> int:
    from dynasoar.consumer.provider_client import ProviderClient

    if _direct(args):
        from dynasoar.consumer import direct

        deployment_id, endpoint = direct.deploy(Path(args.name), args.hp)
        print(f"deployed on {args.hp} as {deployment_id}: {endpoint}")
        return 0
    d = ProviderClient(args.sp or args.sp_default).call("Deploy", name=args.name, host=args.hp)
    print(f"{d.service} deployed on {d.host} as {d.id}: {d.endpoint}")
    return 0


def _undeploy(args: argparse.Namespace) -> int:
    from dynasoar.consumer.provider_client import ProviderClient

    if _direct(args):
        from dynasoar.consumer import direct

        stopped = direct.undeploy(args.name, args.hp)
        print(f"{args.name}: {'undeployed' if stopped else 'no such deployment'} on {args.hp}")
        return 0 if stopped else 1
    count = ProviderClient(args.sp or args.sp_default).call(
        "Undeploy", name=args.name, host=args.hp
    )
    print(f"{args.name}: {count} deployment{'s' if count != 1 else ''} undeployed")
    return 0


def _status(args: argparse.Namespace) -> int:
    from dynasoar.consumer.status import fetch_status, render_table

    status = fetch_status(args.sp)
    if args.json:
        import json

        print(json.dumps(status, indent=2, default=str))
    else:
        print(render_table(status))
    return 0


def _logs(args: argparse.Namespace) -> int:
    from dynasoar.consumer.logs import show_logs

    return show_logs(
        args.sp, args.service, deployment=args.deployment, tail=args.tail, follow=args.follow
    )


def _call(args: argparse.Namespace) -> int:
    from dynasoar.consumer.call import call

    credentials = None
    if args.key or args.cert:
        from dynasoar.soap.security import Credentials

        if not (args.key and args.cert):
            raise SystemExit("dynasoar call: --key and --cert go together")
        credentials = Credentials.load(args.key, args.cert)
    result = call(
        args.wsdl, args.operation, args.arguments, soap12=args.soap12, credentials=credentials
    )
    host = result.headers.get("x-dynasoar-host")
    if host:
        cold = "cold" if result.headers.get("x-dynasoar-cold") == "1" else "warm"
        print(
            f"(via {host}, deployment {result.headers.get('x-dynasoar-deployment')}, {cold})",
            file=sys.stderr,
        )
    print(result.render())
    return 0


def _keys(args: argparse.Namespace) -> int:
    from dynasoar import keys

    argv = [str(args.directory), "--name", args.name, "--days", str(args.days)]
    argv += ["--force"] if args.force else []
    for host in args.host or []:
        argv += ["--host", host]
    return keys.main(argv)


def _demo(args: argparse.Namespace) -> int:
    from dynasoar.demo import run_demo

    return run_demo()


def _bench(args: argparse.Namespace) -> int:
    from dynasoar.bench import run_bench

    return run_bench(quick=args.quick, which=args.which, out=args.out)
