"""Versions are first-class: a deployed stateless service rolls out to a newly published version
under load with no failed call, rolls back the same way, splits its traffic for a canary, keeps
a stateful deployment (and its state) unless told to drop it, and unpublishes only what runs
nowhere. Undeploying drains: messages in flight are answered, and their retries do not bring
the service back."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from dynasoar.consumer.call import call
from dynasoar.errors import RemoteFault
from dynasoar.paths import samples_dir

from .conftest import Cluster, make_package, wait_for
from .load import Load, summary
from .test_shutdown import compute, in_background
from .wire import ECHO_ACTION, echo_body, envelope, post

MakeCluster = Callable[..., Cluster]
WSA = "{http://www.w3.org/2005/08/addressing}"


def versioned(tmp: Path, version: str, sample: str = "echo") -> Path:
    """The sample package, published as ``version``."""
    package = make_package(tmp / version, sample)
    manifest = package / "dynasoar.toml"
    manifest.write_text(manifest.read_text().replace('version = "1.0"', f'version = "{version}"'))
    return package


def versions_seen(load: Load, since: float) -> Counter[str | None]:
    return Counter(o.version for o in load.after(since) if o.service == "Echo")


def dynasoar(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "dynasoar", *args], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_new_version_rolls_out_and_back_under_load_with_no_failed_call(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    c = make_cluster(hps=[(), ()])
    c.client.publish(versioned(tmp_path, "1.0"))
    c.client.call("Deploy", name="Echo", host=c.hps[0].url)
    c.client.call("Deploy", name="Echo", host=c.hps[1].url)
    load = Load(c.sp.url, echo=16, counter=0).start()
    wait_for(lambda: load.count() > 200, what="calls to flow")

    published = c.client.publish(versioned(tmp_path, "2.0"))
    switched = time.monotonic()
    assert published.traffic == (("2.0", 100),)
    assert (published.started, published.retired) == (2, 2)
    wait_for(lambda: len(load.after(switched)) > 300, what="calls after the rollout")
    assert set(versions_seen(load, switched)) == {"2.0"}
    deployments = c.client.call("ListDeployments")
    assert {(d.version, d.state) for d in deployments} == {("2.0", "ready")}

    back = c.client.call("Rollback", name="Echo")
    rolled_back = time.monotonic()
    assert [(s.version, s.percent) for s in back.share] == [("1.0", 100)]
    wait_for(lambda: len(load.after(rolled_back)) > 300, what="calls after the rollback")
    outcomes = load.stop()
    assert set(versions_seen(load, rolled_back)) == {"1.0"}
    assert all(o.ok for o in outcomes), summary(outcomes)
    assert {"1.0", "2.0"} <= {o.version for o in outcomes}
    services = {s.name: s for s in c.client.call("ListServices")}
    assert services["Echo"].version == "1.0"
    assert services["Echo"].available == ["1.0", "2.0"]


def test_a_canary_gets_its_share_of_the_calls(make_cluster: MakeCluster, tmp_path: Path) -> None:
    c = make_cluster(hps=[()])
    c.client.publish(versioned(tmp_path, "1.0"))
    c.client.publish(versioned(tmp_path, "2.0"), rollout=False)
    assert c.client.call("ListServices")[0].version == "1.0"  # only kept
    out = dynasoar("traffic", "Echo", "1.0=90", "2.0=10", "--sp", c.sp.url)
    assert "1.0 90%, 2.0 10%" in out
    seen: Counter[str] = Counter()
    url = c.service_url("Echo")
    for i in range(2000):
        reply = post(url, envelope(echo_body(str(i))), soap_action=ECHO_ACTION)
        assert reply.status == 200
        seen[reply.headers["x-dynasoar-version"]] += 1
    assert abs(seen["2.0"] / 2000 - 0.10) <= 0.05, seen
    assert abs(seen["1.0"] / 2000 - 0.90) <= 0.05, seen
    out = dynasoar("rollout", "Echo", "2.0", "--sp", c.sp.url)
    assert "2.0 100%" in out
    assert {d.version for d in c.client.call("ListDeployments")} == {"2.0"}


def test_shares_must_name_kept_versions_and_add_up(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    c = make_cluster(hps=[()])
    c.client.publish(versioned(tmp_path, "1.0"))
    done = subprocess.run(
        [sys.executable, "-m", "dynasoar", "traffic", "Echo", "1.0=90", "3.0=10", "--sp", c.sp.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "has no version '3.0'" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(RemoteFault, match="add up to 100"):
        factory = c.client.service._binding.wsdl.types.get_type("{urn:dynasoar:2006}TrafficShare")
        c.client.call("SetTraffic", name="Echo", share=[factory(version="1.0", percent=50)])


def test_a_stateful_service_keeps_its_deployment_and_state_unless_forced(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    c = make_cluster(hps=[()])
    c.client.publish(versioned(tmp_path, "1.0", "counter"))
    counter = c.service_url("Counter") + "?wsdl"
    assert [call(counter, "Increment", []).value for _ in range(3)] == [1, 2, 3]
    published = c.client.publish(versioned(tmp_path, "2.0", "counter"))
    assert "keeps running 1.0 with its state" in published.note
    again = call(counter, "Increment", [])
    assert (again.value, again.headers["x-dynasoar-version"]) == (4, "1.0")

    out = dynasoar("rollout", "Counter", "2.0", "--force", "--sp", c.sp.url)
    assert "the state of Counter 1.0" in out and "was dropped" in out
    fresh = call(counter, "Increment", [])
    assert (fresh.value, fresh.headers["x-dynasoar-version"]) == (1, "2.0")


def test_unpublish_is_refused_while_deployed_and_then_unreachable(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    c = make_cluster(hps=[()])
    c.client.publish(versioned(tmp_path, "1.0"))
    c.client.publish(versioned(tmp_path, "2.0"), rollout=False)
    call(c.service_url("Echo") + "?wsdl", "Echo", ["text=x"])
    with pytest.raises(RemoteFault, match="takes 100% of Echo's messages"):
        c.client.call("Unpublish", name="Echo", version="1.0")
    assert c.client.call("Unpublish", name="Echo", version="2.0") == ["2.0"]  # runs nowhere
    with pytest.raises(RemoteFault, match="undeploy first, or unpublish with --undeploy"):
        c.client.call("Unpublish", name="Echo")
    out = dynasoar("unpublish", "Echo", "--undeploy", "--sp", c.sp.url)
    assert "unpublished 1.0" in out
    assert not c.client.call("ListDeployments") and not c.client.call("ListServices")
    reply = post(c.service_url("Echo"), envelope(echo_body()), soap_action=ECHO_ACTION)
    assert WSA + "DestinationUnreachable" in reply.fault_codes()
    assert not list((c.work / "sp" / "repository" / "packages" / "Echo").iterdir())


def test_an_undeploy_drains_instead_of_being_undone_by_retries(make_cluster: MakeCluster) -> None:
    c = make_cluster(hps=[()])
    c.client.publish(samples_dir() / "echo")
    first = call(c.service_url("Echo") + "?wsdl", "Echo", ["text=x"])
    slow, answer = in_background(lambda: compute(c, 3000))
    time.sleep(0.5)
    assert c.client.call("Undeploy", name="Echo") == 1  # returns once drained
    slow.join(timeout=60)
    (reply,) = answer
    assert reply.status == 200  # answered, not cut
    assert reply.headers["x-dynasoar-deployment"] == first.headers["x-dynasoar-deployment"]
    assert not c.client.call("ListDeployments")  # no retry brought it back


def test_publishing_again_keeps_every_version_up_to_a_bound(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    c = make_cluster(sp_args=["--keep-versions", "3"], hps=[()])
    for n in range(1, 8):
        c.client.publish(versioned(tmp_path, f"1.{n}"), rollout=False)
    (echo,) = c.client.call("ListServices")
    # The first stays (it is routed); of the rest, the newest three.
    assert echo.version == "1.1"
    assert echo.available == ["1.1", "1.5", "1.6", "1.7"]
    stored = sorted(p.name for p in (c.work / "sp" / "repository" / "packages" / "Echo").iterdir())
    assert len(stored) == 4
