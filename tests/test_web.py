"""The page of ``speaker serve`` in a real browser: Debian's headless Chromium driven by Selenium
(chromium-driver), its microphone a fake device fed from a WAV of one speaker's voice.

One test drives the page end to end as a person would: it types the API key the page asks for,
enrols "george" from the microphone (the first takes are kept by the page until the speaker has
the speech the quality gates ask for), logs in as george by voice (the stream is
decided early) and takes the screenshot README shows (``docs/web.png``, written when
``SPEAKER_WEB_SCREENSHOT`` names a file).  Without Chromium and its driver the tests skip, except
on CI (``CI`` set), where the fixture installs them with apt (``chromium chromium-driver``).
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import FIX, apt_install
from test_serve import Server, open_store

httpx = pytest.importorskip("httpx")

KEY = "web-page-test-key-0123456789"
#: The quality gates (Server turns them off for the digits of other tests), a speaker's minimum
#: below the default 10 s to keep the test short: a new speaker needs 8 s of net speech in all, so
#: the first takes are kept by the page.
GATES = ("--min-speech", 1, "--min-speaker-speech", 8, "--min-test-speech", 1)
WEB = Path(__file__).resolve().parents[1] / "speaker" / "web"


def _browser_programs() -> tuple[str | None, str | None]:
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (os.path.exists("/usr/bin/chromedriver") and "/usr/bin/chromedriver") \
        or None
    return chrome, driver


@pytest.fixture(scope="module")
def chromium():
    """(chromium, chromedriver) paths; installed with apt on CI, else the tests skip."""
    if not os.environ.get("CI"):
        pytest.importorskip("selenium")
    apt_install(["chromium", "chromium-driver"], lambda: None not in _browser_programs())
    chrome, driver = _browser_programs()
    if chrome is None or driver is None:
        msg = "Chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI: apt-get did not provide them)")
        pytest.skip(msg)
    return chrome, driver


def test_the_page_and_its_files_name_no_other_host():
    """No CDN, font, script, style or link of another host: no URL with a scheme but data:."""
    files = sorted(WEB.iterdir())
    assert {f.name for f in files} >= {"index.html", "app.js", "style.css", "pcm-worklet.js"}
    for f in files:
        text = f.read_text()
        assert not re.search(r"(?i)\b(?:https?|wss?|ftp):/{2}", text.replace("${scheme}://", "")), f.name
        assert "//" not in re.sub(r"(?m)//.*$|/\*.*?\*/", "", re.sub(r"'[^']*'|\"[^\"]*\"|`[^`]*`", "", text)) \
            or f.suffix != ".css", f.name


def test_every_control_has_a_label_and_results_are_announced():
    html = (WEB / "index.html").read_text()
    for field_id in re.findall(r"<input id=\"([^\"]+)\"", html):
        assert f'<label for="{field_id}">' in html, field_id
    for region in ("enrol-result", "verdict", "identify-result", "speakers-status", "service"):
        assert re.search(rf'id="{region}"[^>]*aria-live="polite"', html), region


def _voice(tmp_path: Path) -> Path:
    """george's recordings not used elsewhere in this test (digits 0-9, takes 3 and 4), one after
    the other, at 16 kHz: the fake microphone loops over it."""
    import soxr
    y = np.concatenate([sf.read(FIX / f"{d}_george_{i}.wav", dtype="float32")[0] for d in range(10) for i in (3, 4)])
    y = soxr.resample(y, 8000, 16000)
    path = tmp_path / "george.wav"
    sf.write(path, y, 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def page_server(cli_trained, tmp_path_factory):
    """A store with two other speakers and a calibration fitted on their trials (so the stream
    can decide early), served with an API key."""
    from speaker.calibration import fit_calibration
    d = tmp_path_factory.mktemp("web")
    with open_store(d / "s.db", cli_trained / "ubm.npz") as st:
        for s in ("lucas", "jackson"):
            st.enroll(s, [FIX / f"{n}_{s}_{i}.wav" for n in range(10) for i in range(2)])
        scores, labels = [], []
        for t in [FIX / f"{n}_{s}_2.wav" for s in ("lucas", "jackson", "george") for n in range(10)]:
            for s in ("lucas", "jackson"):
                scores.append(st.score(s, t))
                labels.append(s in t.name)
        st.calibration = fit_calibration(np.array(scores), np.array(labels))
    (d / "keys.txt").write_text(f"page: {KEY}\n")
    srv = Server("--store", d / "s.db", "--api-key-file", d / "keys.txt", "--stream-reference-seconds", 1.0,
                 "--stream-min-speech", 0.5, *GATES, log=d / "server.log", quiet=False)
    yield srv, d
    srv.stop()


@pytest.mark.long(40)
def test_enrol_from_the_microphone_and_log_in_by_voice(chromium, page_server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    chrome, driver_path = chromium
    srv, d = page_server
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1100,1500", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={_voice(tmp_path)}", "--autoplay-policy=no-user-gesture-required",
                 "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        opts.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver_path), options=opts)
    wait = WebDriverWait(browser, 60)
    try:
        browser.get(srv.url + "/")
        wait.until(lambda b: b.find_element(By.ID, "key-section").is_displayed())   # the page asks for the key
        browser.find_element(By.ID, "key").send_keys(KEY)
        browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "speakers-status"), "2 speaker(s)"))

        browser.find_element(By.ID, "enrol-id").send_keys("george")
        record = browser.find_element(By.ID, "enrol-record")
        for take in range(1, 6):                                    # 3-4 takes of ~3 s of speech reach 8 s
            record.click()
            wait.until(lambda b: re.match(r"[4-9]\.\d s", b.find_element(By.ID, "enrol-timer").text or ""))
            record.click()
            wait.until(lambda b, n=take: len(b.find_elements(By.CSS_SELECTOR, "#takes li:not(:empty)")) == n and
                       "checking" not in b.find_element(By.ID, "takes").text)
            assert not browser.find_elements(By.CSS_SELECTOR, "#takes li.bad"), browser.find_element(By.ID, "takes").text
            if browser.find_elements(By.CSS_SELECTOR, "#takes li.ok"):
                break
            assert "Not enough speech yet" in browser.find_element(By.ID, "enrol-result").text   # the gate's verdict
            assert "pending" in browser.find_elements(By.CSS_SELECTOR, "#takes li")[-1].get_attribute("class")
        assert take >= 2 and len(browser.find_elements(By.CSS_SELECTOR, "#takes li.ok")) == take
        assert f"george: {take} recording(s)" in browser.find_element(By.ID, "enrol-result").text
        wait.until(ec.text_to_be_present_in_element((By.ID, "speakers-status"), "3 speaker(s)"))

        browser.find_element(By.ID, "verify-id").send_keys("george")
        browser.find_element(By.ID, "verify-start").click()
        wait.until(lambda b: b.find_element(By.ID, "verdict").get_attribute("data-decision"))
        verdict = browser.find_element(By.ID, "verdict")
        assert verdict.get_attribute("data-decision") == "accept", verdict.text
        assert verdict.get_attribute("data-early") == "true", verdict.text
        assert "Accepted as george" in verdict.text and "decided early" in verdict.text

        origin = srv.url
        resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert resources and all(u.startswith(origin) for u in resources), resources
        if os.environ.get("SPEAKER_WEB_SCREENSHOT"):
            browser.save_screenshot(os.environ["SPEAKER_WEB_SCREENSHOT"])
    finally:
        browser.quit()
    with httpx.Client(base_url=srv.url, headers={"X-API-Key": KEY}) as c:
        assert c.get("/v1/speakers/george").json()["recordings"] == take
    log = (d / "server.log").read_text()
    assert "verify/stream" in log and "api_key=***" in log and KEY not in log     # the key is never logged
