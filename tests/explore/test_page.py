"""The page in a real browser (headless Chromium driven by selenium): sort the table, open a
view, click on the image, and see the fine-tuned overlay change and a live IoU appear.

It saves a screenshot (explore.png in the test's tmp folder, its path printed). It is skipped
only where no Chromium or chromedriver is installed (`apt-get install chromium
chromium-driver`); .ci/run installs them, so it runs in CI."""

from __future__ import annotations

import shutil

import pytest

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'"
)
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

RUN = "mix"  # finetuned_run's folder name
WAIT = 120  # seconds: the decoders answer on a shared CPU


def browser_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip(
            "no headless browser here (chromium and chromedriver not found on PATH): "
            "apt-get install chromium chromium-driver"
        )
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary, driver = browser_paths()
    options = Options()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,900")
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


def column_values(browser, name: str) -> list[float]:
    """The table's cells of column `name`, top to bottom, as numbers (– for skipped: None)."""
    headers = [
        th.get_attribute("data-column")
        for th in browser.find_elements(By.CSS_SELECTOR, "#views th")
    ]
    index = headers.index(name)
    cells = browser.find_elements(By.CSS_SELECTOR, f"#views tbody tr td:nth-child({index + 1})")
    return [None if c.text == "–" else float(c.text) for c in cells]


def test_sort_open_a_view_click_and_see_the_answer(browser, explorer_url, tmp_path):
    wait = WebDriverWait(browser, WAIT)
    browser.get(explorer_url)
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#views tbody tr")) == 3)

    header = browser.find_element(By.CSS_SELECTOR, f'#views th[data-column="{RUN} box"]')
    header.click()
    ascending = column_values(browser, f"{RUN} box")
    assert ascending == sorted(ascending)
    browser.find_element(By.CSS_SELECTOR, f'#views th[data-column="{RUN} box"]').click()
    assert column_values(browser, f"{RUN} box") == sorted(ascending, reverse=True)

    browser.find_element(By.CSS_SELECTOR, "#views tbody tr").click()
    wait.until(lambda b: b.find_element(By.ID, "view-panel").is_displayed())
    wait.until(
        lambda b: b.execute_script("return document.getElementById('preview').naturalWidth") > 0
    )
    browser.find_element(By.ID, "view-prompt").send_keys("box")
    overlay = f'#overlays img[data-name="{RUN}"]'
    evaluated = browser.find_element(By.CSS_SELECTOR, overlay).get_attribute("src")
    assert evaluated.startswith("data:image/png")
    live = f'#metrics td.live-iou[data-model="{RUN}"]'
    assert browser.find_element(By.CSS_SELECTOR, live).text == "–"

    layer = browser.find_element(By.ID, "prompt-layer")
    ActionChains(browser).move_to_element_with_offset(layer, 5, 5).click().perform()
    wait.until(lambda b: b.find_element(By.CSS_SELECTOR, live).text not in ("–", ""))
    assert 0.0 <= float(browser.find_element(By.CSS_SELECTOR, live).text) <= 1.0
    assert browser.find_element(By.CSS_SELECTOR, overlay).get_attribute("src") != evaluated
    assert len(browser.find_elements(By.CSS_SELECTOR, "#prompt-layer circle.water-point")) >= 1

    screenshot = tmp_path / "explore.png"
    browser.save_screenshot(str(screenshot))
    print(f"screenshot: {screenshot}")
    assert screenshot.stat().st_size > 10_000
