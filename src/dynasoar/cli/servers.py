"""``dynasoar sp`` and ``dynasoar hp``: their settings resolved (flag > environment > config
file > default, see :mod:`dynasoar.cli.config`), checked before anything starts (every mistake
an operator can make is one line naming the fix, exit status 2), then the actor served."""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import ssl
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dynasoar.cli.config import Option, add_options, render, resolve
from dynasoar.cli.server_options import HP_OPTIONS, SP_OPTIONS
from dynasoar.errors import DynasoarError
from dynasoar.serve import StartupError

if TYPE_CHECKING:
    from dynasoar.soap.security import Policy, TrustStore

#: Seconds a thread holding the GIL runs before another waiting for it is let in (the SP's).
SWITCH_INTERVAL = 0.001

SP_EPILOG = """examples:
  dynasoar sp --port 8080 --data /var/lib/dynasoar/sp
  dynasoar sp --config /etc/dynasoar/sp.toml --log-format json
  DYNASOAR_PORT=9090 dynasoar sp --print-config

It serves: /services/NAME (advertised services, ?wsdl for each), /dynasoar/ServiceProvider
(the management port, ?wsdl), / (status page), /metrics, /readyz, /healthz.
SIGTERM stops it gracefully (--grace); SIGHUP restarts it in place, keeping its socket.
"""

HP_EPILOG = """examples:
  dynasoar hp --sp http://127.0.0.1:8080
  dynasoar hp --port 8081 --data /var/lib/dynasoar/hp --capacity 16 --label trusted=yes
  dynasoar hp --backend libvirt --sp http://sp.example:8080 --config /etc/dynasoar/hp.toml

It serves: /dynasoar/HostProvider (its port, ?wsdl), /metrics, /readyz, /healthz.
"""


def add_server_parsers(sub: argparse._SubParsersAction[Any]) -> None:
    for command, options, help_text, epilog in (
        ("sp", SP_OPTIONS, "run a Service Provider", SP_EPILOG),
        ("hp", HP_OPTIONS, "run a Host Provider", HP_EPILOG),
    ):
        p = sub.add_parser(
            command,
            help=help_text,
            description=f"{help_text[0].upper()}{help_text[1:]}. Every option can also be "
            "set in a TOML config file (--config) or an environment variable; a flag wins over "
            "the environment, the environment over the file.",
            epilog=epilog,
        )
        add_options(p, options)
        p.set_defaults(func=_run_sp if command == "sp" else _run_hp, options=options)


def prepare(args: argparse.Namespace) -> bool:
    """Resolve a server command's settings; print them and return False for --print-config."""
    options: list[Option] = args.options
    sources = resolve(args, options)
    if args.command == "sp" and args.data is None:
        args.data = default_sp_data()
    if args.print_config:
        print(render(args.command, args, options, sources), end="")
        return False
    return True


def default_sp_data() -> Path:
    """Where an SP keeps its state when no --data says: the user's data directory."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share") / "dynasoar/sp"


# -- checks before anything starts ---------------------------------------------------------------


def data_dir(path: Path) -> Path:
    """``--data``: made if missing, and writable, or a StartupError saying why not."""
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise StartupError(f"--data {path} is a file, not a directory: name a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise StartupError(
            f"--data {path}: cannot write there ({exc.strerror}); name a directory this "
            "user may write in"
        ) from None
    return path


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if (args.tls_cert is None) != (args.tls_key is None):
        raise StartupError("--tls-cert and --tls-key go together: give both, or neither")
    if args.tls_cert is None:
        return None
    from dynasoar.tls import server_context

    _readable(args.tls_cert, "--tls-cert")
    _readable(args.tls_key, "--tls-key")
    try:
        return server_context(args.tls_cert, args.tls_key)
    except (ssl.SSLError, ValueError) as exc:
        raise StartupError(
            f"--tls-cert {args.tls_cert} / --tls-key {args.tls_key}: not a PEM certificate "
            f"and its key ({exc})"
        ) from None


def security(args: argparse.Namespace) -> Policy:
    from dynasoar.soap.security import Credentials, Policy

    if (args.key is None) != (args.cert is None):
        raise StartupError("--key and --cert go together: give both, or neither")
    credentials = None
    if args.key is not None:
        _readable(args.key, "--key")
        _readable(args.cert, "--cert")
        try:
            credentials = Credentials.load(args.key, args.cert)
        except (OSError, ValueError) as exc:
            raise StartupError(f"--key {args.key} / --cert {args.cert}: {exc}") from None
    trust = _trust(args.trust, "--trust")
    return Policy(credentials=credentials, trust=trust, max_skew=args.max_skew)


def _trust(paths: list[Path], flag: str) -> TrustStore | None:
    if not paths:
        return None
    from dynasoar.soap.security import TrustStore

    for path in paths:
        if not path.is_dir():
            _readable(path, flag)
    try:
        return TrustStore.from_paths(paths)
    except (OSError, ValueError) as exc:
        raise StartupError(f"{flag}: {exc}") from None


def _readable(path: Path, flag: str) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise StartupError(f"{flag} {path}: cannot read it ({exc.strerror})") from None


# -- running them ------------------------------------------------------------------------------


def _run_sp(args: argparse.Namespace) -> int:
    import asyncio

    from dynasoar.http import new_event_loop
    from dynasoar.provider.app import ProviderApp
    from dynasoar.provider.autoscaler import Scaling
    from dynasoar.provider.config import ProviderConfig
    from dynasoar.serve import listen, reexec, serve

    data = data_dir(args.data or default_sp_data())
    config = ProviderConfig(
        ca=args.ca,
        security=security(args),
        consumer_trust=_trust(args.consumer_trust, "--consumer-trust"),
        data=data,
        hosts=args.hp,
        deploy_timeout=args.deploy_timeout,
        call_timeout=args.call_timeout,
        keep_versions=args.keep_versions,
        max_upload_bytes=args.max_upload,
        placement=args.placement,
        scaling=Scaling(
            scale_at=args.scale_at,
            max_replicas=args.max_replicas,
            idle_timeout=args.idle_timeout,
            host_timeout=args.host_timeout,
            reconcile_interval=args.reconcile_interval,
        ),
        public_urls=list(args.public_url),
        soap12_sender_status=args.soap12_sender_status,
        reply_to_allow=list(args.reply_to_allow),
        reply_retry_for=args.reply_retry_for,
        registry=args.registry,
        heartbeat_rate=args.heartbeat_rate,
        peer_url=args.peer_url,
    )
    tls = tls_context(args)
    listener = listen(args.host, args.port)  # a port in use stops the start here
    # The management port's operations (a host's heartbeat, say) run on worker threads; a
    # thread holding the GIL keeps the event loop (relaying, placing) waiting for up to the
    # switch interval each time it wakes. 1 ms rather than Python's 5 ms bounds that wait.
    sys.setswitchinterval(SWITCH_INTERVAL)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        try:
            app = ProviderApp(config, loop)
        except sqlite3.Error as exc:
            raise StartupError(
                f"--data {data}: its registry (registry.sqlite) cannot be used ({exc}); "
                "restore it, or start with an empty --data"
            ) from None
        except OSError as exc:
            raise StartupError(f"--data {data}: {exc.strerror}: {exc.filename}") from None
        # SIGHUP: a graceful re-exec in place, with the listening socket kept open.
        outcome = loop.run_until_complete(
            serve(
                "sp",
                args.host,
                args.port,
                app,
                grace=args.grace,
                tls=tls,
                reexec_on_hangup=True,
                listener=listener,
            )
        )
    except BaseException:
        listener[0].close()
        raise
    finally:
        loop.close()
    if outcome.restart is not None:
        reexec(outcome.restart)
    return 0


def _run_hp(args: argparse.Namespace) -> int:
    import asyncio

    from dynasoar.host.app import HostApp, HostConfig
    from dynasoar.http import new_event_loop
    from dynasoar.serve import listen, serve
    from dynasoar.terms import HostTerms

    policy = security(args)
    tls = tls_context(args)
    if args.libvirt_template is not None:
        _readable(args.libvirt_template, "--libvirt-template")
    if args.data is not None:
        data_dir(args.data)
    listener = listen(args.host, args.port)  # a port in use stops the start here
    scratch = None
    if args.data is None:  # an HP's state lives as long as its processes: a scratch directory
        scratch = data = Path(tempfile.mkdtemp(prefix="dynasoar-hp-"))
    else:
        data = data_dir(args.data)
    try:
        try:
            app = HostApp(
                HostConfig(
                    ca=args.ca,
                    security=policy,
                    data=data,
                    backend=args.backend,
                    capacity=args.capacity,
                    service_provider=args.sp,
                    libvirt_uri=args.libvirt_uri,
                    libvirt_template=args.libvirt_template,
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
                    public_urls=list(args.public_url),
                    soap12_sender_status=args.soap12_sender_status,
                )
            )
        except DynasoarError as exc:  # a backend that cannot work here (libvirt unreachable)
            raise StartupError(f"--backend {args.backend}: {exc.reason}") from None
        except OSError as exc:
            raise StartupError(f"--data {data}: {exc.strerror}: {exc.filename}") from None
        loop = new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(
                serve("hp", args.host, args.port, app, grace=args.grace, tls=tls, listener=listener)
            )
        finally:
            loop.close()
    except BaseException:
        listener[0].close()
        raise
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0
