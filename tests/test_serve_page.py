"""The server's web page in headless Chromium (Debian's chromium and chromedriver, via selenium):
pick a file and an adapter, see the transcript with segment times, and get the SRT link; and talk
into the microphone (Chromium's fake one, playing a WAV file in a loop) and see the text live."""

from __future__ import annotations

import re
import shutil

import pytest

from .adapter_helpers import make_adapter
from whisper_lora.serve import serving

from .test_serve import free_port, transcribe_one

webdriver = pytest.importorskip("selenium.webdriver")

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


LIVE_SENTENCE = "She opened the window to let in some fresh air, and the weather is very nice today."


def chromium(*extra_flags):
    if not (CHROMIUM and DRIVER):
        pytest.fail("chromium and chromedriver are missing: run `make setup` (it installs them)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1000,800", *extra_flags):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def mic_browser(say, tmp_path_factory):
    """A Chromium whose microphone plays LIVE_SENTENCE and 1.5 s of quiet (a turn's end), again and again."""
    import numpy as np
    import soundfile as sf
    import soxr

    speech, rate = sf.read(str(say(LIVE_SENTENCE)), dtype="float32")
    audio = np.concatenate([speech, np.zeros(int(1.5 * rate), np.float32)])
    wav = tmp_path_factory.mktemp("mic") / "sentence.wav"
    sf.write(str(wav), soxr.resample(audio, rate, 48000), 48000, subtype="PCM_16")  # a microphone's rate
    driver = chromium("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                      f"--use-file-for-fake-audio-capture={wav}")
    yield driver
    driver.quit()


def test_the_page_transcribes_a_file_with_the_chosen_adapter(browser, tmp_path, english_clips):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from whisper_lora.serve.options import ServeOptions

    adapter = make_adapter(tmp_path / "calls", seed=2, scale=0.03)
    path, _ = english_clips[3]
    with serving(ServeOptions(model="bundled:tiny.en", adapters={"calls": str(adapter)}, port=free_port())) as url:
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


def words(text):
    return re.findall(r"[a-z']+", text.lower())


def test_the_microphone_button_streams_live_text_to_the_page(mic_browser, tmp_path):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from whisper_lora.serve.options import ServeOptions

    browser = mic_browser

    def final_text(d):
        return " ".join(e.text for e in d.find_elements(By.CSS_SELECTOR, "#live .final"))

    def color(selector):
        return browser.execute_script("return getComputedStyle(document.querySelector(arguments[0])).color", selector)

    expected = set(words(LIVE_SENTENCE))
    with serving(ServeOptions(model="bundled:tiny.en", port=free_port())) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 90, poll_frequency=0.2)
        wait.until(lambda d: Select(d.find_element(By.ID, "model")).options)
        browser.find_element(By.ID, "language").send_keys("en")
        mic = browser.find_element(By.ID, "mic")
        assert mic.text == "Start microphone"
        mic.click()
        assert mic.text == "Stop"
        wait.until(lambda d: "listening with whisper-1" in d.find_element(By.ID, "status").text)
        # tiny.en may misspell a word or two of espeak's voice: most of them are enough
        wait.until(lambda d: len(expected & set(words(final_text(d)))) >= 0.8 * len(expected))
        try:  # the looped sentence's next words, while they are still partial (for the screenshot)
            WebDriverWait(browser, 15, poll_frequency=0.1).until(
                lambda d: len(words(d.find_element(By.ID, "partial").text)) >= 2)
        except TimeoutException:
            pass
        shot = tmp_path / "live.png"
        browser.save_screenshot(str(shot))
        shutil.copy(shot, "/tmp/live_page.png")
        assert color("#live .final") == "rgb(0, 0, 0)"
        assert color("#partial") == "rgb(153, 153, 153)"
        mic.click()
        wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("finished"))
        status = browser.find_element(By.ID, "status")
        assert status.get_attribute("class") != "error"
        assert float(re.search(r"([\d.]+) s of audio", status.text).group(1)) > 5
        wait.until(lambda d: d.find_element(By.ID, "mic").text == "Start microphone")
        assert browser.find_element(By.ID, "partial").text == ""
        assert len(expected & set(words(final_text(browser)))) >= 0.8 * len(expected)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
