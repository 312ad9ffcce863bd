"""The server's web page in headless Chromium (Debian's chromium and chromedriver, via selenium):
pick a file and an adapter, see the transcript with segment times, and get the SRT link."""

from __future__ import annotations

import shutil

import pytest

from .adapter_helpers import make_adapter
from .test_serve import free_port, running, transcribe_one

webdriver = pytest.importorskip("selenium.webdriver")

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.fail("chromium and chromedriver are missing: run `make setup` (it installs them)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1000,800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_the_page_transcribes_a_file_with_the_chosen_adapter(browser, tmp_path, english_clips):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from whisper_lora.serve.options import ServeOptions

    adapter = make_adapter(tmp_path / "calls", seed=2, scale=0.03)
    path, _ = english_clips[3]
    with running(ServeOptions(model="bundled:tiny.en", adapters={"calls": str(adapter)}, port=free_port())) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 120)
        wait.until(lambda d: len(Select(d.find_element(By.ID, "model")).options) == 2)
        assert [o.text for o in Select(browser.find_element(By.ID, "model")).options] == ["whisper-1", "calls"]
        browser.find_element(By.ID, "file").send_keys(str(path))
        Select(browser.find_element(By.ID, "model")).select_by_visible_text("calls")
        browser.find_element(By.ID, "go").click()
        wait.until(lambda d: d.find_element(By.ID, "text").text.strip())
        rows = browser.find_elements(By.CSS_SELECTOR, "#segments tr")
        expected, again = (transcribe_one(adapter, path, timestamps=True) for _ in range(2))
        if expected == again:  # else the temperature fallback sampled: no two runs agree
            assert browser.find_element(By.ID, "text").text == expected.text
            assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows] == [s.text for s in expected.segments]
        assert "→" in rows[0].text and browser.find_element(By.ID, "srt").is_displayed()
        assert "english" in browser.find_element(By.ID, "status").text
        shot = tmp_path / "page.png"
        browser.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
