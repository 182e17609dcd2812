"""Configuration the way daemons are configured: every option of ``dynasoar sp`` / ``hp`` has a
flag, a key in a TOML file and a DYNASOAR_* variable, and the first of flag > environment >
file > default wins; ``--print-config`` shows the result (and where each value came from) as
TOML that loads again. Real processes where a user would see it."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from dynasoar.cli import build_parser
from dynasoar.cli.config import Option, render, resolve
from dynasoar.cli.server_options import HP_OPTIONS, SP_OPTIONS
from dynasoar.paths import SOURCE_ROOT
from dynasoar.procs import start_actor
from integration.wire import ECHO_ACTION, echo_body, envelope, post, wsa_headers

DEPLOY = SOURCE_ROOT / "deploy"


def parsed(argv: list[str], environ: dict[str, str]) -> tuple[object, dict[str, str]]:
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    return args, resolve(args, args.options, environ)


def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path) -> None:
    config = tmp_path / "sp.toml"
    config.write_text(
        "[server]\nport = 1111\ngrace = 11\nmax-upload = '1G'\n"
        "[provider]\ndeploy-timeout = 12\ncall-timeout = 13\n"
    )
    args, sources = parsed(
        ["sp", "--config", str(config), "--port", "3333"],
        {"DYNASOAR_PORT": "2222", "DYNASOAR_GRACE": "22", "DYNASOAR_PLACEMENT": "cheapest"},
    )
    assert (args.port, sources["port"]) == (3333, "--port")  # type: ignore[attr-defined]
    assert (args.grace, sources["grace"]) == (22.0, "$DYNASOAR_GRACE")  # type: ignore[attr-defined]
    assert (args.placement, sources["placement"]) == ("cheapest", "$DYNASOAR_PLACEMENT")  # type: ignore[attr-defined]
    assert (args.deploy_timeout, sources["deploy-timeout"]) == (12.0, str(config))  # type: ignore[attr-defined]
    assert (args.max_upload, sources["max-upload"]) == (1 << 30, str(config))  # type: ignore[attr-defined]
    assert (args.host_timeout, sources["host-timeout"]) == (6.0, "default")  # type: ignore[attr-defined]


def test_lists_paths_and_switches_from_each_source(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "hp.toml"
    config.write_text(
        "[server]\ntls-cert = 'tls/hp.crt'\n"
        "[host]\nlabel = ['trusted=yes', 'zone=a']\nsite = ['lab=2']\ndrain = true\n"
        "[security]\ntrust = ['keys/sp.crt', '/abs/ca.pem']\n[log]\nlevel = 'warning'\n"
    )
    args, sources = parsed(
        ["hp", "--config", str(config), "--site", "near=1"],
        {"DYNASOAR_LABEL": "gpu=no, arch=x86", "DYNASOAR_DRAIN": "no"},
    )
    # Relative paths in a file are the file's neighbours.
    assert args.tls_cert == tmp_path / "etc" / "tls" / "hp.crt"  # type: ignore[attr-defined]
    assert args.trust == [tmp_path / "etc" / "keys" / "sp.crt", Path("/abs/ca.pem")]  # type: ignore[attr-defined]
    assert args.site == [("near", 1)]  # type: ignore[attr-defined]
    assert args.label == [("gpu", "no"), ("arch", "x86")]  # type: ignore[attr-defined]
    assert (args.drain, sources["drain"]) == (False, "$DYNASOAR_DRAIN")  # type: ignore[attr-defined]
    assert (args.log_level, sources["log-level"]) == ("warning", str(config))  # type: ignore[attr-defined]


def test_the_printed_configuration_loads_again_to_the_same_values(tmp_path: Path) -> None:
    for command, options in (("sp", SP_OPTIONS), ("hp", HP_OPTIONS)):
        first, sources = parsed(
            [command, "--port", "4321", "--trust", str(tmp_path / "certs"), "-vv"],
            {"DYNASOAR_MAX_UPLOAD": "3G", "DYNASOAR_LOG_FORMAT": "json"},
        )
        printed = render(command, first, options, sources)  # type: ignore[arg-type]
        tomllib.loads(printed)  # it is TOML
        again_file = tmp_path / f"{command}.toml"
        again_file.write_text(printed)
        again, again_sources = parsed([command, "--config", str(again_file)], {})
        for option in options:
            assert getattr(again, option.dest) == getattr(first, option.dest), option.name
            if getattr(first, option.dest) not in (None, []):
                assert again_sources[option.name] == str(again_file), option.name


def test_every_option_has_a_documented_variable_and_key() -> None:
    """Each option's help names its variable and its [section] key; docs/operating.md lists
    every one of them."""
    doc = (SOURCE_ROOT / "docs" / "operating.md").read_text()
    for command, options in (("sp", SP_OPTIONS), ("hp", HP_OPTIONS)):
        # (argparse wraps lines at hyphens: "max-\nupload")
        help_text = " ".join(build_parser()[1][command].format_help().split()).replace("- ", "-")
        for option in options:
            assert option.env in help_text, option.name
            assert f"[{option.section}] {option.key}" in help_text, option.name
            assert f"`{option.env}`" in doc, f"{option.env} is not in docs/operating.md"
            assert f"`--{option.name}`" in doc, f"--{option.name} is not in docs/operating.md"


def _documented_defaults(command: str) -> dict[str, str]:
    """The default column of docs/operating.md's table of ``dynasoar COMMAND``, by flag."""
    doc = (SOURCE_ROOT / "docs" / "operating.md").read_text()
    table = doc.split(f"#### `dynasoar {command}`", 1)[1].split("\n#", 1)[0]
    row = re.compile(r"^\| `--([a-z0-9-]+)`[^|]* \| `[A-Z0-9_]+` \| `[^`]+` \| ([^|]*) \|")
    return {m[1]: m[2].strip() for line in table.splitlines() if (m := row.match(line))}


@pytest.mark.parametrize(("command", "options"), [("sp", SP_OPTIONS), ("hp", HP_OPTIONS)])
def test_every_documented_default_is_the_options_own(command: str, options: list[Option]) -> None:
    documented = _documented_defaults(command)
    for option in options:
        default = option.default
        if option.switch:
            expected = "true" if default else "false"
        elif default is None or default == []:
            expected = "—"
        else:
            expected = str(option.show(default) if option.show else default)
        assert documented.get(option.name) == expected, option.name
    assert sorted(documented) == sorted(o.name for o in options)


@pytest.mark.parametrize(
    ("sample", "command", "options"),
    [("sp.toml", "sp", SP_OPTIONS), ("hp.toml", "hp", HP_OPTIONS)],
)
def test_the_sample_configs_load_and_name_every_setting(
    sample: str, command: str, options: list[object]
) -> None:
    path = DEPLOY / sample
    done = subprocess.run(
        [sys.executable, "-m", "dynasoar", command, "--config", str(path), "--print-config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("DYNASOAR_")},
    )
    assert done.returncode == 0, done.stderr
    table = tomllib.loads(path.read_text())
    printed = tomllib.loads(done.stdout)
    for section, values in table.items():
        for key, value in values.items():
            if value == []:
                continue
            line = next(line for line in done.stdout.splitlines() if line.startswith(f"{key} = "))
            assert line.endswith(f"# {path}"), line  # it came from the file
            assert key in printed[section]
    # The sample names every setting, set or commented out: an operator finds them all there.
    text = path.read_text()
    for option in options:
        key = option.key  # type: ignore[attr-defined]
        assert re.search(rf"^#? ?{re.escape(key)} = ", text, re.M), f"{sample} lacks {key}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_real_sp_takes_its_port_from_the_file_and_its_log_format_from_the_environment(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = tmp_path / "sp.toml"
    config.write_text(
        f"[server]\nport = {port}\ndata = 'state'\n[log]\nformat = 'text'\nlevel = 'warning'\n"
    )
    sp = start_actor(
        "sp",
        ["--config", str(config), "--log-level", "info"],
        tmp_path / "sp.log",
        env={"DYNASOAR_LOG_FORMAT": "json"},
    )
    try:
        assert sp.url == f"http://127.0.0.1:{port}"
        assert (tmp_path / "state" / "registry.sqlite").exists()  # relative to the file
        headers, _ = wsa_headers(to=f"{sp.url}/services/Nope", action=ECHO_ACTION)
        post(f"{sp.url}/services/Nope", envelope(echo_body(), headers), soap_action=ECHO_ACTION)
    finally:
        sp.stop()
    lines = [json.loads(line) for line in sp.log().splitlines() if line.startswith("{")]
    # info from the flag (the file said warning), json from the environment (the file: text)
    assert any(e["logger"] == "dynasoar.access" and e["level"] == "info" for e in lines), lines
    assert all(line.startswith("{") for line in sp.log().splitlines() if line.strip())
