"""The HTML report renders in a real browser: headless Chromium (Debian's package) driven by
Selenium with Debian's chromedriver. `.ci/run` installs both; elsewhere the test says how."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from PIL import Image
from test_pipeline import figures

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
    ),
]
# Chromium's own network chatter is refused on closed machines; these flags keep it quiet.
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000"]


@pytest.fixture()
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(driver, script: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"the report never satisfied: {script}")


def test_report_renders_every_figure_in_chromium(browser, tiny_run, tiny_report, tmp_path):
    from selenium.webdriver.common.by import By

    url = tiny_report.as_uri()
    browser.get(url)
    categories = wait_for(browser, "return typeof categories === 'object' && categories")
    shot = tmp_path / "report.png"
    browser.save_screenshot(str(shot))
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10, "the rendered report looks blank"

    # Every figure the pipeline drew is among the results the page loaded.
    names = browser.execute_script(
        "return Object.values(results).filter(r => r.mime_type.startsWith('image/')).map(r => r.name)")
    assert sorted(names) == sorted(path.name for path in figures(tiny_run))

    # The sidebar the page rendered lists every category, in the lecture's order.
    sidebar = browser.find_element(By.TAG_NAME, "body").text
    positions = [sidebar.index(category) for category in sorted(categories)]
    assert positions == sorted(positions)
