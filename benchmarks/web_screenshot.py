"""A screenshot of the web page (``ser-live web``) in headless Chromium, after it analysed a
two-channel call built from RAVDESS fixture clips (one voice per channel, as in
``screenshot.py``): ``python benchmarks/web_screenshot.py docs``."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "corpus" / "ravdess"
TURNS = [  # (channel, start s, clip)
    (0, 0.3, "Actor_02/03-01-01-01-01-01-02.flac"),  # neutral
    (1, 3.8, "Actor_04/03-01-05-02-02-01-04.flac"),  # angry
    (0, 7.6, "Actor_02/03-01-04-02-01-01-02.flac"),  # sad
    (1, 11.0, "Actor_04/03-01-07-02-01-01-04.flac"),  # disgust
]


def call(path: Path) -> Path:
    from ser_live import SAMPLE_RATE
    from ser_live.audio_io import load_audio

    out = np.zeros((15 * SAMPLE_RATE, 2), np.float32)
    for channel, at_s, clip in TURNS:
        x = load_audio(FIXTURES / clip)
        i = int(at_s * SAMPLE_RATE)
        out[i : i + len(x), channel] += x[: len(out) - i]
    sf.write(str(path), out, SAMPLE_RATE)
    return path


def wait(condition, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError("the page did not get there")


def main(out_dir: str) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    tmp = Path(tempfile.mkdtemp())
    recording = call(tmp / "support-call.wav")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("ser-live")), "web", "--port", str(port)],
        stderr=subprocess.DEVNULL,
    )
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--window-size=1200,1500"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health"):
                    return True
            except OSError:
                return False

        wait(ready)
        browser.get(f"http://127.0.0.1:{port}/")
        wait(lambda: browser.find_elements(By.CSS_SELECTOR, "input[type=file]"))[0].send_keys(
            str(recording)
        )
        wait(lambda: recording.name in browser.page_source)
        for label in browser.find_elements(By.CSS_SELECTOR, "[data-testid=stCheckbox] label"):
            if label.text.startswith("Stereo call"):
                label.click()
        wait(
            lambda: [b for b in browser.find_elements(By.TAG_NAME, "button") if b.text == "Analyse"]
        )[0].click()
        wait(lambda: "Call cues" in browser.page_source)
        time.sleep(2)  # the charts draw after the page's text
        browser.save_screenshot(str(Path(out_dir) / "web.png"))
    finally:
        browser.quit()
        server.terminate()
        server.wait()
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs")
