"""``dynasoar demo``: the whole Dynasoar story on loopback, narrated.

One Service Provider and two Host Providers start as real processes; the echo service is
published (advertised, not deployed); the first consumer call makes the SP choose a host, ship
the package and relay the call; the second call is relayed warm; status; undeploy. Where
libvirt works, the VM half follows (:mod:`dynasoar.demo_vm`): vm-echo called cold (a boot),
undeployed, called cold again (a snapshot restored), and vm-counter moved between the two hosts
while it is called. Then shutdown.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from dynasoar.consumer.call import call
from dynasoar.consumer.provider_client import ProviderClient
from dynasoar.consumer.status import fetch_status, render_table
from dynasoar.demo_vm import vm_available, vm_story
from dynasoar.keys import make_keypair
from dynasoar.paths import samples_dir
from dynasoar.procs import Actor, start_actor


def say(step: str, text: str = "") -> None:
    print(f"\n== {step}" + (f"\n   {text}" if text else ""), flush=True)


def run_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="dynasoar-demo-") as tmp:
        work = Path(tmp)
        actors: list[Actor] = []
        try:
            return _story(work, actors)
        finally:
            for actor in reversed(actors):
                actor.stop()


def _keys(work: Path) -> dict[str, list[str]]:
    """A key pair each; the SP believes the hosts' certificates, the hosts the SP's."""
    made = {name: make_keypair(work / "keys", name) for name in ("sp", "hp1", "hp2")}
    for name, (_, cert) in made.items():
        trusted_by = work / ("trusted-by-hosts" if name == "sp" else "trusted-by-sp")
        trusted_by.mkdir(exist_ok=True)
        shutil.copy(cert, trusted_by / cert.name)
    return {
        name: [
            "--key",
            str(key),
            "--cert",
            str(cert),
            "--trust",
            str(work / ("trusted-by-sp" if name == "sp" else "trusted-by-hosts")),
        ]
        for name, (key, cert) in made.items()
    }


def _story(work: Path, actors: list[Actor]) -> int:
    vms = vm_available()
    say(
        "0. Keys",
        "each actor gets an X.509 key pair; SP -> HP control messages and the "
        "hosts' replies are signed (WS-Security) and checked against the peers' certificates",
    )
    signing = _keys(work)

    say("1. A Service Provider starts", "it advertises services; it hosts none itself")
    sp = start_actor(
        "sp", ["--port", "0", "--data", str(work / "sp"), *signing["sp"]], work / "sp.log"
    )
    actors.append(sp)
    print(f"   SP at {sp.url}")

    say("2. Two Host Providers start and register with it")
    for i in (1, 2):
        hp = start_actor(
            "hp",
            [
                "--port",
                "0",
                "--data",
                str(work / f"hp{i}"),
                "--capacity",
                "4",
                "--sp",
                sp.url,
                *signing[f"hp{i}"],
                *(["--backend", "libvirt"] if vms is None else []),
            ],
            work / f"hp{i}.log",
        )
        actors.append(hp)
        print(f"   HP{i} at {hp.url}")
    client = ProviderClient(sp.url)
    _wait_for_hosts(client, 2)
    print("   both registered")

    say("3. Publish the echo service", "the package goes to the SP's repository as MTOM")
    info = client.publish(samples_dir() / "echo")
    print(
        f"   published {info.name} {info.version}: advertised at {sp.url}/services/{info.name}, "
        "deployed nowhere yet"
    )

    wsdl = f"{sp.url}/services/{info.name}?wsdl"
    say("4. First call (cold)", "no deployment exists: the SP chooses a host, ships, waits, relays")
    started = time.monotonic()
    first = call(wsdl, "Echo", ["text=hello, Dynasoar"])
    cold = time.monotonic() - started
    print(
        f"   answer {first.render()!r} from {first.headers.get('x-dynasoar-host')} "
        f"(cold={first.headers.get('x-dynasoar-cold')}) in {cold * 1000:.0f} ms"
    )

    say("5. Second call (warm)", "the deployment is cached: the SP only relays")
    started = time.monotonic()
    second = call(wsdl, "Echo", ["text=hello again"])
    warm = time.monotonic() - started
    print(
        f"   answer {second.render()!r} from {second.headers.get('x-dynasoar-host')} "
        f"(cold={second.headers.get('x-dynasoar-cold')}) in {warm * 1000:.0f} ms"
    )
    if first.headers.get("x-dynasoar-cold") != "1" or second.headers.get("x-dynasoar-cold") != "0":
        print("   unexpected: the first call should deploy, the second should not", file=sys.stderr)
        return 1

    say("6. Status")
    print(
        "\n".join(
            ("   " + line).rstrip() for line in render_table(fetch_status(sp.url)).splitlines()
        )
    )

    say("7. Undeploy echo")
    count = client.call("Undeploy", name=info.name)
    remaining = client.call("ListDeployments")
    print(f"   {count} deployment(s) stopped; {len(remaining or [])} left")

    if vms is None:
        if not vm_story(say, client, sp.url, [hp.url for hp in actors[1:]]):
            return 1
    else:
        say("8. Whole VMs", f"skipped: {vms}")

    say("12. Shut down", "SIGTERM to every actor; each stops cleanly")
    codes = [actor.stop() for actor in reversed(actors)]
    actors.clear()
    print(f"   exit codes {codes}")
    ok = all(code == 0 for code in codes) and not remaining
    print("\n" + ("The story ran end to end." if ok else "Something went wrong; see the logs."))
    return 0 if ok else 1


def _wait_for_hosts(client: ProviderClient, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hosts = client.call("ListHosts") or []
        if sum(1 for h in hosts if h.state == "up") >= count:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the Host Providers did not register within {timeout:.0f} s")
