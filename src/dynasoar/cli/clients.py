"""The ``dynasoar`` commands that act as a consumer of a Service Provider (``publish``,
``deploy``, ``undeploy``, ``status``, ``logs``), of any service (``call``), or of nothing at
all (``keys``, ``demo``, ``bench``): their options, help and examples, and what they do."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from dynasoar.cli.argtypes import count, positive_int, seconds
from dynasoar.errors import InvalidRequest

DEFAULT_SP = "http://127.0.0.1:8080"
#: What the commands that talk to an SP use when --sp is not given.
SP_ENV = "DYNASOAR_SP"


def sp_default() -> str:
    return os.environ.get(SP_ENV) or DEFAULT_SP


def _sp_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sp",
        metavar="URL",
        default=None,
        help=f"the Service Provider (default: ${SP_ENV}, else {DEFAULT_SP}; now {sp_default()})",
    )


def _ca_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ca",
        type=Path,
        metavar="PEM",
        help="verify https:// servers against this CA (default: $DYNASOAR_CA, else the system's)",
    )


def add_client_parsers(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "publish",
        help="upload a service package to an SP's repository (advertised, not deployed)",
        description="Upload a service package (a directory with a dynasoar.toml, or a .zip / "
        ".tar.gz of one) to the SP's repository: the service is advertised at once and "
        "deployed when its first message arrives. VM images travel by digest: those the SP "
        "holds already are not sent again.",
        epilog="examples:\n  dynasoar publish deploy/services/echo\n"
        "  dynasoar publish echo.tar.gz --sp http://sp.example:8080",
    )
    _ca_arg(p)
    p.add_argument("package", type=Path, help="a package directory, .zip or .tar.gz")
    _sp_arg(p)
    p.add_argument(
        "--no-rollout",
        action="store_true",
        help="keep the service's traffic where it is (the version is only kept); by default "
        "a deployed stateless service rolls out to it",
    )
    p.set_defaults(func=_publish)

    from dynasoar.cli.owners import add_owner_parsers

    add_owner_parsers(sub, _sp_arg)

    p = sub.add_parser(
        "deploy",
        help="deploy a service now (or, with --hp and no --sp, a package on disk straight to "
        "a Host Provider)",
        description="Deploy a published service now rather than on its first message: where "
        "the SP's placement says, or on --hp. With --hp and no --sp, no SP is involved: the "
        "package on disk is shipped straight to that Host Provider (whatever $DYNASOAR_SP "
        "says). On a terminal, the phases the client can see are shown as they happen.",
        epilog="examples:\n  dynasoar deploy Echo\n"
        "  dynasoar deploy Echo --sp http://127.0.0.1:8080 --hp http://127.0.0.1:8081\n"
        "  dynasoar deploy deploy/services/echo --hp http://127.0.0.1:8081",
    )
    _ca_arg(p)
    p.add_argument("name", help="a service name, or a package path with --hp and no --sp")
    _sp_arg(p)
    p.add_argument("--hp", metavar="URL", help="on this Host Provider")
    p.set_defaults(func=_deploy)

    p = sub.add_parser(
        "undeploy",
        help="undeploy a service (all replicas, or one host's; with --hp and no --sp, a "
        "deployment id on that host)",
        description="Undeploy a service: every deployment of it, or those on --hp. With --hp "
        "and no --sp, the deployment with that id on that Host Provider.",
        epilog="examples:\n  dynasoar undeploy Echo\n"
        "  dynasoar undeploy 3f2a9c... --hp http://127.0.0.1:8081",
    )
    _ca_arg(p)
    p.add_argument("name", help="a service name, or a deployment id with --hp and no --sp")
    _sp_arg(p)
    p.add_argument("--hp", metavar="URL", help="on this Host Provider only")
    p.set_defaults(func=_undeploy)

    p = sub.add_parser(
        "status",
        help="services, deployments and hosts of an SP",
        description="What the SP advertises, where services run and its Host Providers: a "
        "table, or with --json a document whose schema is apiVersion dynasoar.status/v1 "
        "(docs/operating.md).",
        epilog="examples:\n  dynasoar status\n  dynasoar status --json | jq '.deployments[]'",
    )
    _ca_arg(p)
    _sp_arg(p)
    p.add_argument("--json", action="store_true", help="print a JSON document, not tables")
    p.set_defaults(func=_status)

    p = sub.add_parser(
        "logs",
        help="a service's output logs (stdout, stderr, VM console)",
        description="A service's output, as its hosts keep it: each deployment's log, current "
        "and ended ones.",
        epilog="examples:\n  dynasoar logs Echo --tail 20\n  dynasoar logs Echo --follow",
    )
    _ca_arg(p)
    p.add_argument("service", help="the service's name")
    p.add_argument("--deployment", metavar="ID", help="this deployment's log only")
    p.add_argument("--follow", action="store_true", help="keep printing new output (Ctrl-C ends)")
    p.add_argument("--tail", type=count, metavar="N", help="the last N lines of each log")
    _sp_arg(p)
    p.set_defaults(func=_logs)

    p = sub.add_parser(
        "call",
        help="call an operation through its WSDL (zeep, WS-Addressing)",
        description="Call one operation of a service through its WSDL, as any consumer would "
        "(zeep; WS-Addressing when the WSDL declares actions). Prints the reply's value (the "
        "SP's routing on stderr), the envelopes with --raw, or the operations with --list.",
        epilog="examples:\n"
        "  dynasoar call http://127.0.0.1:8080/services/Echo?wsdl --list\n"
        "  dynasoar call http://127.0.0.1:8080/services/Echo?wsdl Echo text=hello\n"
        "  dynasoar call http://127.0.0.1:8080/services/Echo?wsdl Echo text=hi --soap12 --raw\n"
        "  dynasoar call http://127.0.0.1:8080/services/Echo?wsdl Echo text=hi \\\n"
        '      --header \'<dyn:PreferredHosts xmlns:dyn="urn:dynasoar:2006">'
        "<dyn:Host>http://127.0.0.1:8081</dyn:Host></dyn:PreferredHosts>'",
    )
    _ca_arg(p)
    p.add_argument("wsdl", help="the service's WSDL (a URL, e.g. .../services/Echo?wsdl)")
    p.add_argument("operation", nargs="?", help="the operation to call (see --list)")
    p.add_argument("arguments", nargs="*", metavar="NAME=VALUE", help="the operation's parameters")
    p.add_argument(
        "--list", action="store_true", help="list the WSDL's operations and their signatures"
    )
    p.add_argument("--soap12", action="store_true", help="use the WSDL's SOAP 1.2 port")
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="XML",
        help="a SOAP header block to send, as XML (repeatable), e.g. dyn:PreferredHosts",
    )
    p.add_argument(
        "--timeout",
        type=seconds,
        default=180.0,
        metavar="SECONDS",
        help="how long to wait for the WSDL and for the reply",
    )
    p.add_argument(
        "--raw", action="store_true", help="print the envelopes sent and received, as XML"
    )
    p.add_argument("--key", type=Path, metavar="PEM", help="sign the message with this key")
    p.add_argument("--cert", type=Path, metavar="PEM", help="... whose certificate this is")
    p.set_defaults(func=_call)

    p = sub.add_parser(
        "keys",
        help="make a key pair and certificate (signing, TLS)",
        description="Write NAME.key (mode 0600) and NAME.crt: a self-signed RSA key pair for "
        "WS-Security signatures (--key/--cert) and for HTTPS (--tls-key/--tls-cert).",
        epilog="examples:\n  dynasoar keys /etc/dynasoar --name sp\n"
        "  dynasoar keys . --name hp1 --host hp1.example --days 730",
    )
    p.add_argument("directory", type=Path, help="where to write NAME.key and NAME.crt")
    p.add_argument("--name", required=True, help="the certificate's common name (CN)")
    p.add_argument("--days", type=int, default=365, help="validity, in days")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.add_argument(
        "--host",
        action="append",
        default=None,
        metavar="NAME",
        help="a host name or address it serves TLS for (repeatable; default: localhost and "
        "127.0.0.1)",
    )
    p.set_defaults(func=_keys)

    p = sub.add_parser(
        "demo",
        help="the whole story on loopback: 1 SP, 2 HPs, narrated",
        description="Start one Service Provider and two Host Providers on 127.0.0.1, publish "
        "the echo sample, call it cold and warm, show the status, undeploy, stop.",
        epilog="example:\n  dynasoar demo",
    )
    p.set_defaults(func=_demo)

    p = sub.add_parser(
        "bench",
        help="benchmarks, printed as ratios measured side by side",
        description="The benchmarks: the warm relay against calling the service directly, a "
        "cold first call, VM image transfer and boot; or the Dynasoar experiment.",
        epilog="examples:\n  dynasoar bench\n  dynasoar bench --quick\n"
        "  dynasoar bench experiment --quick --out build/experiment\n"
        "  dynasoar bench fleet --hosts 10000",
    )
    p.add_argument(
        "which",
        nargs="?",
        choices=("experiment", "fleet"),
        help="experiment: the Dynasoar experiment over an emulated network (docs/experiment.md); "
        "fleet: an SP against --hosts simulated hosts (a load generator for the control plane)",
    )
    p.add_argument(
        "--hosts", type=positive_int, default=1000, metavar="N", help="fleet: simulated hosts"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="shorter runs (a reduced grid; fleet: 5 s, 5 cold calls)",
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="the experiment's CSVs and plots")
    p.set_defaults(func=_bench)


# -- what they do ----------------------------------------------------------------------------


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
    moved = f" ({info.started} started, {info.retired} drained)" if info.started else ""
    print("traffic: " + ", ".join(f"{v} {w}%" for v, w in info.traffic) + moved)
    if info.note:
        print(info.note)
    return 0


def _direct(args: argparse.Namespace) -> bool:
    """--hp and no --sp: the consumer acts as its own Service Provider (an explicit flag wins
    over $DYNASOAR_SP)."""
    return args.given_sp is None and args.hp is not None


def _deploy(args: argparse.Namespace) -> int:
    from dynasoar.consumer import deploying

    if _direct(args):
        package = Path(args.name)
        if not package.exists():
            raise InvalidRequest(
                f"{args.name} is not a package on disk (a directory, .zip or .tar.gz); to "
                f"deploy the published service {args.name} on {args.hp} through a Service "
                "Provider, add --sp URL"
            )
        deployment_id, endpoint = deploying.to_host(package, args.hp, sys.stderr)
        print(f"deployed on {args.hp} as {deployment_id}: {endpoint}")
        return 0
    d = deploying.via_provider(args.sp, args.name, args.hp, sys.stderr)
    print(f"{d.service} deployed on {d.host} as {d.id}: {d.endpoint}")
    return 0


def _undeploy(args: argparse.Namespace) -> int:
    from dynasoar.consumer.provider_client import ProviderClient

    if _direct(args):
        from dynasoar.consumer import direct

        stopped = direct.undeploy(args.name, args.hp)
        print(f"{args.name}: {'undeployed' if stopped else 'no such deployment'} on {args.hp}")
        return 0 if stopped else 1
    count_ = ProviderClient(args.sp).call("Undeploy", name=args.name, host=args.hp)
    print(f"{args.name}: {count_} deployment{'s' if count_ != 1 else ''} undeployed")
    return 0


def _status(args: argparse.Namespace) -> int:
    from dynasoar.consumer.status import fetch_status, render_table

    status = fetch_status(args.sp)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(render_table(status))
    return 0


def _logs(args: argparse.Namespace) -> int:
    from dynasoar.consumer.logs import show_logs

    return show_logs(
        args.sp, args.service, deployment=args.deployment, tail=args.tail, follow=args.follow
    )


def _call(args: argparse.Namespace) -> int:
    from dynasoar.consumer.call import ReplyHeaders, call, list_operations

    if args.list:
        for line in list_operations(args.wsdl, soap12=args.soap12, timeout=args.timeout):
            print(line)
        return 0
    if args.operation is None:
        raise InvalidRequest("name the operation to call (dynasoar call WSDL --list shows them)")
    credentials = None
    if args.key or args.cert:
        from dynasoar.soap.security import Credentials

        if not (args.key and args.cert):
            raise InvalidRequest("--key and --cert go together")
        try:
            credentials = Credentials.load(args.key, args.cert)
        except (OSError, ValueError) as exc:
            raise InvalidRequest(f"--key {args.key} / --cert {args.cert}: {exc}") from None
    trace = ReplyHeaders()
    try:
        result = call(
            args.wsdl,
            args.operation,
            args.arguments,
            soap12=args.soap12,
            timeout=args.timeout,
            credentials=credentials,
            soap_headers=args.header,
            trace=trace,
        )
    finally:
        if args.raw:
            _print_envelopes(trace)
    host = result.headers.get("x-dynasoar-host")
    if host:
        cold = "cold" if result.headers.get("x-dynasoar-cold") == "1" else "warm"
        print(
            f"(via {host}, deployment {result.headers.get('x-dynasoar-deployment')}, {cold})",
            file=sys.stderr,
        )
    if not args.raw:
        print(result.render())
    return 0


def _print_envelopes(trace: object) -> None:
    sent = getattr(trace, "sent", b"")
    received = getattr(trace, "received", b"")
    if sent:
        print("<!-- sent -->")
        print(sent.decode("utf-8", "replace").rstrip())
    if received:
        print("<!-- received -->")
        print(received.decode("utf-8", "replace").rstrip())
    sys.stdout.flush()


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

    return run_bench(quick=args.quick, which=args.which, out=args.out, hosts=args.hosts)
