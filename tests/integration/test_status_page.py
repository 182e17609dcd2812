"""The SP's status page at ``/``, loaded by a real browser (headless Chromium, driven through
chromedriver): what it says of services, deployments (a lost one with its reason), hosts,
recent deployments (a failed one) and faults, that it escapes what consumers chose, loads
nothing from outside and reloads itself. A screenshot is kept in build/status-page.png."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dynasoar.consumer.call import call
from dynasoar.errors import RemoteFault
from dynasoar.paths import SOURCE_ROOT, samples_dir

from .conftest import Cluster, make_package, wait_for
from .wire import ECHO_ACTION, echo_body, envelope, get, post, wsa_headers

MakeCluster = Callable[..., Cluster]
CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
SCREENSHOT = SOURCE_ROOT / "build" / "status-page.png"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None, reason="chromium and chromium-driver (make install)"
)


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="dynasoar-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",  # as root
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1400,1400",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(DRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


HOSTILE = "<script>alert(1)</script>"


def test_the_status_page_in_a_browser(make_cluster: MakeCluster, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    cluster = make_cluster(sp_args=["--host-timeout", "1"], hps=[["--heartbeat", "0.3"]] * 2)
    sp = cluster.sp.url
    client = cluster.client
    client.publish(samples_dir() / "echo")
    client.publish(samples_dir() / "counter")
    broken = make_package(tmp_path, "echo", name="Broken")
    (broken / "echo_service.py").write_text("def broken(:\n")
    client.publish(broken)

    doomed = cluster.hps[1].url
    client.call("Deploy", name="Echo", host=cluster.hps[0].url)  # not on the doomed host
    echoed = call(cluster.service_url("Echo") + "?wsdl", "Echo", ["text=x"])
    client.call("Deploy", name="Counter", host=doomed)
    with pytest.raises(RemoteFault):
        call(cluster.service_url("Broken") + "?wsdl", "Echo", ["text=x"])
    # A consumer's words on the page: a service name and a message id, both hostile.
    target = f"{sp}/services/%3Cscript%3Ealert(1)%3C%2Fscript%3E"
    headers, _ = wsa_headers(to=target, action=ECHO_ACTION, message_id="&lt;b&gt;bold&lt;/b&gt;")
    assert post(target, envelope(echo_body(), headers), soap_action=ECHO_ACTION).status == 500
    # The stateful Counter is lost with its host.
    cluster.hps[1].kill()
    wait_for(
        lambda: any(d.state == "lost" for d in client.call("ListDeployments", name="Counter")),
        what="Counter to be lost",
    )

    browser.get(sp + "/")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))
    assert "dynasoar Service Provider" in browser.title

    def rows(section: str) -> dict[str, str]:
        found = browser.find_elements(By.CSS_SELECTOR, f"#{section} tr[data-key]")
        return {row.get_attribute("data-key"): row.text for row in found}

    services = rows("services")
    assert set(services) == {"Broken", "Counter", "Echo"}
    assert "stateful" in services["Counter"] and "stateless" in services["Echo"]
    assert "1.0 100%" in services["Echo"]  # its traffic: all to its one version
    link = browser.find_element(By.CSS_SELECTOR, '#services tr[data-key="Echo"] a')
    assert link.get_attribute("href") == f"{sp}/services/Echo?wsdl"
    assert get(link.get_attribute("href")).status == 200

    deployments = list(rows("deployments").values())
    echo_row = next(r for r in deployments if r.startswith("Echo"))
    assert "ready" in echo_row and echoed.headers["x-dynasoar-deployment"] in echo_row
    counter_row = next(r for r in deployments if r.startswith("Counter"))
    assert "lost" in counter_row and f"its host {doomed} is down" in counter_row

    hosts = rows("hosts")
    assert "down" in hosts[doomed]
    assert "up" in next(text for address, text in hosts.items() if address != doomed)

    recent = browser.find_element(By.ID, "recent-deploys").text
    assert "Broken" in recent and "failed" in recent and "SyntaxError" in recent
    assert "Echo" in recent and "deployed" in recent

    faults = browser.find_element(By.ID, "recent-faults").text
    assert HOSTILE in faults  # shown as the text it is ...
    assert "<b>bold</b>" in faults
    assert "DestinationUnreachable" in faults and "DeploymentFailed" in faults
    # ... never run or rendered: the page has no script and no element a consumer named.
    assert browser.find_elements(By.TAG_NAME, "script") == []
    assert browser.find_elements(By.CSS_SELECTOR, "#recent-faults b") == []

    # Nothing from outside: no scripts, images, frames or style sheets, only inline style.
    for tag in ("img", "iframe", "link", "object", "embed"):
        assert browser.find_elements(By.TAG_NAME, tag) == [], tag
    refresh = browser.find_element(By.CSS_SELECTOR, 'meta[http-equiv="refresh"]')
    assert refresh.get_attribute("content") == "10"

    page = get(sp + "/")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert post(sp + "/", b"<x/>").status == 405  # read-only
