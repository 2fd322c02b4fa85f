"""Take the dashboard screenshots of docs/dashboard.md: ``python docs/_screens.py``.

Seeds a store with one execution in each state the pages show (the dashboard tests'
``seed``), serves it with ``durably dashboard`` and photographs the main pages in
headless Chromium (Debian's ``chromium`` and ``chromium-driver``, through Selenium).
Writes ``docs/images/dashboard-*.png``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    from tests.dashboard.flows import seed

    work = Path(tempfile.mkdtemp(prefix="durably-screens-"))
    ids = seed(work / "store", work / "flag")
    script = Path(sys.executable).with_name("durably")
    command = [str(script), "dashboard", "--store", str(work / "store"), "--port", "0"]
    server = subprocess.Popen(
        [*command, "--operator", "alice", "--utc"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    url = server.stdout.readline().split()[2]
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        service=Service(shutil.which("chromedriver") or "chromedriver"), options=options
    )
    pages = {
        "executions": "",
        "execution": f"executions/{ids['fine']}",
        "failed": f"executions/{ids['failed']}",
        "attention": "attention",
    }
    try:
        IMAGES.mkdir(parents=True, exist_ok=True)
        for name, path in pages.items():
            driver.set_window_size(1400, 1000)
            driver.get(url + path)
            driver.find_element(By.TAG_NAME, "main")
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1400, min(int(height) + 120, 2400))  # the whole page
            time.sleep(0.2)
            driver.save_screenshot(str(IMAGES / f"dashboard-{name}.png"))
            print(IMAGES / f"dashboard-{name}.png")
    finally:
        driver.quit()
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
