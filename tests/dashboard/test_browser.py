"""The dashboard in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium) against ``durably dashboard`` served by the real
console script, beside a real worker process on an LMDB store.

The operator logs in, lists the executions, filters the failed ones, opens one, sees its
timeline, retries it with a reason, and watches it complete (the page updates itself);
then signals a waiting execution through its form. The store is checked afterwards: the
record's status and attempt, and the audit entries with the reason and the name given
at login. (``docs/_screens.py`` takes the docs' screenshots the same way.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

import durably.sync

from . import flows
from .conftest import read_back

pytestmark = pytest.mark.slow

TOKEN = "browser-test-token-0123"
CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None or DRIVER is None:
        why = "needs chromium and chromedriver (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"the browser test {why}; .ci/run installs them")
        pytest.skip(f"the browser test {why}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _line(stream: IO[str], wanted: str, proc: subprocess.Popen[str], timeout: float) -> str:
    """The first line of ``stream`` containing ``wanted`` (the process's start banner)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if wanted in line:
            return line
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"no {wanted!r} from {proc.args}: {proc.stderr and proc.stderr.read()}")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A worker process with three executions (failed, completed, waiting) and the
    dashboard serving their store with a token, on a port the OS chose."""
    store, flag = tmp_path / "store", tmp_path / "flag"
    worker = subprocess.Popen(
        [sys.executable, flows.__file__, str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    dashboard: subprocess.Popen[str] | None = None
    try:
        _line(worker.stdout, "worker ready", worker, 30)  # type: ignore[arg-type]
        with durably.sync.Client(store) as client:
            failed = client.start("charge", {"sku": "lamp", "flag": str(flag), "amount": 120})
            fine = client.start("fine", 1)
            waiting = client.start("waiter", "w-1")
            watched = client.start("waiter", "w-2")
            deadline = time.monotonic() + 30
            wanted_of = {
                failed: "failed",
                fine: "completed",
                waiting: "waiting",
                watched: "waiting",
            }
            for eid, wanted in wanted_of.items():
                while client.get_execution(eid).status.value != wanted:
                    assert time.monotonic() < deadline, f"{eid} never became {wanted}"
                    time.sleep(0.05)
        script = Path(sys.executable).with_name("durably")
        dashboard = subprocess.Popen(
            [str(script), "dashboard", "--store", str(store), "--port", "0"],
            env={**os.environ, "DURABLY_DASHBOARD_TOKEN": TOKEN},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        url = _line(dashboard.stdout, "durably dashboard:", dashboard, 30).split()[2]  # type: ignore[arg-type]
        yield {
            "url": url,
            "store": store,
            "flag": flag,
            "failed": failed,
            "fine": fine,
            "waiting": waiting,
            "watched": watched,
        }
    finally:
        if dashboard is not None:
            dashboard.terminate()
            dashboard.wait(10)
        assert worker.stdin is not None
        worker.stdin.close()  # the worker stops when its stdin closes
        worker.wait(30)


def test_operator_retries_a_failed_execution_in_a_real_browser(
    browser: Any, world: dict[str, Any]
) -> None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import Select, WebDriverWait

    # A page that reloads itself (a status changed) may swap an element while it is read.
    flaky = (NoSuchElementException, StaleElementReferenceException)
    wait = WebDriverWait(browser, 20, poll_frequency=0.1, ignored_exceptions=flaky)
    url, failed = world["url"], world["failed"]

    def rows() -> list[str]:
        table = browser.find_element(By.ID, "executions-table")
        return [
            r.get_attribute("data-id")
            for r in table.find_elements(By.CSS_SELECTOR, "tbody tr[data-id]")
        ]

    def status() -> str:
        return str(browser.find_element(By.CSS_SELECTOR, "#status .badge").text)

    # Logging in: the token and the name every action is recorded with.
    browser.get(url)
    wait.until(seen.presence_of_element_located((By.ID, "login-form")))
    browser.find_element(By.NAME, "token").send_keys(TOKEN)
    browser.find_element(By.NAME, "name").send_keys("alice")
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait.until(seen.presence_of_element_located((By.ID, "executions-table")))
    assert browser.find_element(By.ID, "operator").text == "alice"
    assert {failed, world["fine"], world["waiting"]} <= set(rows())

    # Filtering by status.
    Select(browser.find_element(By.NAME, "status")).select_by_value("failed")
    browser.find_element(By.ID, "apply").click()
    wait.until(seen.url_contains("status=failed"))
    assert rows() == [failed]

    # The failed execution's page: its steps and timeline.
    browser.find_element(By.LINK_TEXT, failed).click()
    wait.until(seen.presence_of_element_located((By.ID, "timeline")))
    assert status() == "failed"
    step = browser.find_element(By.CSS_SELECTOR, 'tr[data-step="charge"]')
    assert step.get_attribute("data-status") == "failed"
    kinds = [
        r.get_attribute("data-kind")
        for r in browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")
    ]
    assert kinds.count("step_completed") == 1 and "step_failed" in kinds
    assert "payment provider unreachable" in browser.find_element(By.ID, "error").text

    # Retrying it with a reason, once the provider is back; the page follows it live.
    world["flag"].touch()
    browser.find_element(By.CSS_SELECTOR, '#retry-form input[name="reason"]').send_keys(
        "provider is back"
    )
    browser.find_element(By.CSS_SELECTOR, "#retry-form button").click()
    wait.until(seen.presence_of_element_located((By.ID, "notice")))
    wait.until(lambda _: status() == "completed")
    assert "charged 120" in browser.find_element(By.ID, "result").text

    execution, trail = read_back(world["store"], failed)
    assert (execution.status.value, execution.attempt, execution.result) == (
        "completed",
        2,
        "charged 120",
    )
    acted = [e for e in trail if e.kind == "operator_action"]
    assert [(e.data["action"], e.data["by"], e.data["reason"]) for e in acted] == [
        ("retry", "alice", "provider is back")
    ]

    # Signalling the waiting execution through its form.
    browser.get(f"{url}executions/{world['waiting']}")
    wait.until(seen.presence_of_element_located((By.ID, "signal-form")))
    assert status() == "waiting"
    assert (
        browser.find_element(By.CSS_SELECTOR, '#signal-form input[name="name"]').get_attribute(
            "value"
        )
        == "approve"
    )
    payload = browser.find_element(By.CSS_SELECTOR, '#signal-form textarea[name="payload"]')
    payload.clear()
    payload.send_keys('{"approved": true}')
    browser.find_element(By.CSS_SELECTOR, '#signal-form input[name="reason"]').send_keys(
        "ok by phone"
    )
    browser.find_element(By.CSS_SELECTOR, "#signal-form button").click()
    wait.until(lambda _: status() == "completed")
    assert '"approved": true' in browser.find_element(By.ID, "result").text
    taken, trail = read_back(world["store"], world["waiting"])
    assert taken.result == {"approved": True}
    delivered = next(e for e in trail if e.kind == "signal_delivered")
    assert (delivered.data["by"], delivered.data["reason"]) == ("alice", "ok by phone")

    # Live: a page left open follows the execution as another process signals it.
    watched = world["watched"]
    browser.get(f"{url}executions/{watched}")
    wait.until(seen.presence_of_element_located((By.ID, "timeline")))
    assert status() == "waiting"
    with durably.sync.Client(world["store"]) as client:
        assert client.signal(watched, "approve", "from elsewhere").accepted
    wait.until(lambda _: status() == "completed")
    assert browser.current_url == f"{url}executions/{watched}"
    assert '"from elsewhere"' in browser.find_element(By.ID, "result").text
