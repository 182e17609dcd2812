"""An SP that crashes mid-deploy leaves no orphan: it records a deployment ("deploying") before
it asks the host, the host undoes a Deploy whose requester left before the reply, and the
restarted SP cleans up what its record names. After SIGKILL of the SP in the middle of a code
deploy and of a VM deploy, and a restart: exactly one deployment exists, on the host and in the
registry, and undeploy leaves none."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dynasoar.consumer.call import call
from dynasoar.paths import SOURCE_ROOT

from .conftest import Cluster, make_package, wait_for
from .hosted import hosted
from .test_vm_images import FULL, domains

MakeCluster = Callable[..., Cluster]


def slow_echo(tmp: Path, seconds: float) -> Path:
    """The echo sample under another name, taking ``seconds`` to start."""
    package = make_package(tmp, "echo", name="SlowEcho")
    (package / "slow_start.py").write_text(
        f"import time\n\ntime.sleep({seconds})\nfrom echo_service import application\n"
    )
    manifest = package / "dynasoar.toml"
    manifest.write_text(
        manifest.read_text().replace("echo_service:application", "slow_start:application")
    )
    return package


def crash_mid_deploy(c: Cluster, service: str, after: float) -> None:
    """A consumer's first call deploys ``service``; the SP is SIGKILLed ``after`` s into it."""
    wsdl = c.service_url(service) + "?wsdl"
    first = threading.Thread(target=_call_ignoring_errors, args=(wsdl,), daemon=True)
    first.start()
    time.sleep(after)
    c.sp.kill()
    first.join(timeout=30)
    c.start_sp()


def _call_ignoring_errors(wsdl: str) -> None:
    try:
        call(wsdl, "Echo", ["text=lost with the SP"])
    except Exception:
        pass  # the SP died under it


def one_deployment_everywhere(c: Cluster, service: str) -> str:
    """The one deployment the registry and the host both hold; its id."""
    wsdl = c.service_url(service) + "?wsdl"
    assert call(wsdl, "Echo", ["text=after the crash"]).value == "after the crash"
    hp = c.hps[0].url
    (record,) = c.client.call("ListDeployments")
    wait_for(lambda: set(hosted(hp)) == {record.id}, timeout=60, what="the host to agree")
    assert record.state == "ready"
    return str(record.id)


def test_an_sp_killed_mid_code_deploy_leaves_no_orphan(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    c = make_cluster(hps=[()])
    c.client.publish(slow_echo(tmp_path, 3.0))
    crash_mid_deploy(c, "SlowEcho", after=1.5)
    one_deployment_everywhere(c, "SlowEcho")
    assert c.client.call("Undeploy", name="SlowEcho") == 1
    wait_for(lambda: not hosted(c.hps[0].url), what="the host to run nothing")
    assert not c.client.call("ListDeployments")


def test_an_sp_killed_mid_vm_deploy_leaves_no_orphan(make_cluster: MakeCluster) -> None:
    if not (FULL / "dynasoar.toml").is_file():
        pytest.fail("the vm-echo image is not built: `make vm-image` (make test does it)")
    if shutil.which("virsh") is None:
        pytest.skip("libvirt is not installed")
    subprocess.run(
        ["bash", str(SOURCE_ROOT / "scripts" / "start-libvirt.sh")], check=True, timeout=60
    )
    c = make_cluster(hps=[["--backend", "libvirt"]])
    c.client.publish(FULL)
    crash_mid_deploy(c, "VmEcho", after=2.0)  # the guest is booting (TCG: ~4 s)
    deployment = one_deployment_everywhere(c, "VmEcho")
    ours = [d for d in domains().split() if d.endswith(deployment)]
    assert len(ours) == 1
    assert c.client.call("Undeploy", name="VmEcho") == 1
    wait_for(lambda: not hosted(c.hps[0].url), what="the host to run nothing")
    wait_for(lambda: deployment not in domains(), what="the domain to go")
