"""The web page (``ser-live web``): the upload analysis against ``analyze``, the page with
Streamlit's own app tester, and one run in a real headless Chromium (Debian's
``chromium`` and ``chromium-driver``, installed by ``make test``)."""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import CORPUS, ROOT, run_cli

from ser_live import SAMPLE_RATE
from ser_live.analysis import EngineOptions
from ser_live.audio_io import load_audio
from ser_live.uploads import MAX_UPLOAD_ENV, Upload, analyze_uploads, shown_name

APP = ROOT / "ser_live" / "web_app.py"
ANGRY = CORPUS / "tess" / "OAF_angry" / "OAF_back_angry.wav"
SAD = CORPUS / "tess" / "OAF_Sad" / "OAF_back_sad.wav"
RAVDESS = CORPUS / "ravdess"


def stereo_call(path: Path) -> Path:
    """A 27 s two-channel call from real clips: one side speaks at 0.5 s and 7 s, the
    other at 3.5 s and, after a silence of more than 10 s, at 22 s."""
    left = np.zeros(27 * SAMPLE_RATE, np.float32)
    right = np.zeros_like(left)
    clips = sorted(RAVDESS.rglob("*.flac"))
    turns = ((left, 0.5, clips[0]), (right, 3.5, clips[2]), (left, 7.0, clips[4]))
    for side, at_s, clip in (*turns, (right, 22.0, clips[6])):
        x = load_audio(clip)[: 4 * SAMPLE_RATE]
        i = int(at_s * SAMPLE_RATE)
        side[i : i + len(x)] += x
    sf.write(str(path), np.stack([left, right], axis=1), SAMPLE_RATE)
    return path


def analyze_tables(folder: Path, name: str, *extra: str) -> dict[str, bytes]:
    """``ser-live analyze NAME`` run in ``folder``: its timeline and summary (and cues
    with ``--channels split``) as bytes."""
    out = folder / "analyze-out"
    out.mkdir(exist_ok=True)
    tables = ["timeline", "summary", "alert-log"] + (["cues"] if "split" in extra else [])
    args = [a for t in tables for a in (f"--{t}", str(out / f"{t}.csv"))]
    proc = run_cli("analyze", name, *args, *extra, "--jobs", "1", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return {t: (out / f"{t}.csv").read_bytes() for t in tables}


def test_shown_names_are_names_not_paths():
    taken: set[str] = set()
    assert shown_name("../../etc/passwd", taken) == "passwd"
    assert shown_name("C:\\Users\\me\\call.wav", taken) == "call.wav"
    assert shown_name("call.wav", taken) == "call.wav (2)"
    assert shown_name("bad\x00name\n.wav", taken) == "badname.wav"
    assert shown_name("///", taken) == "recording"


def test_uploads_give_analyzes_tables(tmp_path):
    """The same model and code path as analyze: the tables are analyze's, byte for byte."""
    shutil.copy(ANGRY, tmp_path / "angry call.wav")
    want = analyze_tables(tmp_path, "angry call.wav")
    run = analyze_uploads(
        [Upload("angry call.wav", (tmp_path / "angry call.wav").read_bytes())], EngineOptions()
    )
    assert run.summary_csv == want["summary"]
    assert run.timeline_csv == want["timeline"]
    (result,) = run.files
    assert result.error is None and result.report_html
    assert (
        result.sides[0].summary["emotion"]
        == next(csv.DictReader(io.StringIO(want["summary"].decode())))["emotion"]
    )


def test_split_channels_give_analyzes_tables_and_cues(tmp_path):
    stereo_call(tmp_path / "call.wav")
    want = analyze_tables(tmp_path, "call.wav", "--channels", "split", "--calibrate")
    run = analyze_uploads(
        [Upload("call.wav", (tmp_path / "call.wav").read_bytes())],
        EngineOptions(calibrate=True),
        split=True,
    )
    assert run.summary_csv == want["summary"]
    assert run.timeline_csv == want["timeline"]
    assert run.cues_csv == want["cues"]
    assert run.alerts_csv == want["alert-log"]
    (result,) = run.files
    assert [(a.rule.name, a.side) for a in result.alerts] == [("long silence", None)]
    assert "alert: long silence" in result.report_html
    assert [s.label for s in result.sides] == ["channel 1", "channel 2"]
    assert all(s.cues and s.cues["talk_share"] for s in result.sides)
    assert "talk share" in result.report_html


def test_bad_uploads_are_one_line_errors_and_the_rest_go_on(tmp_path, monkeypatch):
    """Content, not names: a text file called .wav is refused, a WAV called .txt is
    analysed; an upload over the limit is refused; the temporary folder holds only files
    this module named, and is gone afterwards."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen: set[str] = set()

    def look(fraction: float, name: str) -> None:
        for folder in tmp_path.glob("ser-live-web-*"):
            seen.update(p.name for p in folder.iterdir())

    angry = ANGRY.read_bytes()
    run = analyze_uploads(
        [
            Upload("../../notes.wav", b"just some text, not audio"),
            Upload("recording.txt", angry),
            Upload("huge.wav", angry),
        ],
        EngineOptions(),
        max_bytes=len(angry),  # at the limit is allowed
        on_progress=look,
    )
    notes, recording, huge = run.files
    assert notes.name == "notes.wav" and "not a readable audio file" in notes.error
    assert str(tmp_path) not in notes.error and "\n" not in notes.error
    assert recording.error is None and recording.sides
    assert huge.error is None
    tables = {"timeline.csv", "summary.csv", "alerts.csv"}
    assert seen <= {"upload-0", "upload-1", "upload-2", *tables}
    assert "upload-1" in seen
    assert not list(tmp_path.iterdir())  # deleted after the run

    small = analyze_uploads([Upload("huge.wav", angry)], EngineOptions(), max_bytes=1000)
    assert small.files[0].error == "huge.wav: larger than the 0.001 MB limit"
    assert not list(tmp_path.iterdir())


def test_temporary_files_are_deleted_on_error(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def fail(fraction: float, name: str) -> None:
        raise RuntimeError("the browser went away")

    with pytest.raises(RuntimeError):
        analyze_uploads([Upload("a.wav", ANGRY.read_bytes())], EngineOptions(), on_progress=fail)
    assert not list(tmp_path.iterdir())


# The page, with Streamlit's app tester (a real script run, no browser).


def page(monkeypatch, limit_mb: int | None = None):
    from streamlit.testing.v1 import AppTest

    if limit_mb is not None:
        monkeypatch.setenv(MAX_UPLOAD_ENV, str(limit_mb))
    return AppTest.from_file(str(APP), default_timeout=120).run()


def analyse(at, *files: tuple[str, bytes]):
    at.file_uploader(key="uploads").set_value([(n, d, "audio/wav") for n, d in files]).run()
    at.button(key="analyse").click().run()
    assert not at.exception, at.exception
    return at


def test_page_shows_the_verdict_and_offers_the_downloads(monkeypatch, tmp_path):
    shutil.copy(ANGRY, tmp_path / "angry.wav")
    want = next(
        csv.DictReader(io.StringIO(analyze_tables(tmp_path, "angry.wav")["summary"].decode()))
    )
    at = analyse(page(monkeypatch), ("angry.wav", ANGRY.read_bytes()))
    text = " ".join(m.value for m in at.markdown)
    assert f"Overall: **{want['emotion']}**" in text
    assert [s.value for s in at.subheader] == ["angry.wav"]
    assert not at.error and not at.warning
    assert "nothing is kept once you close this tab" in at.caption[0].value


def test_page_says_what_is_wrong_with_a_bad_file(monkeypatch):
    at = analyse(
        page(monkeypatch, limit_mb=1),
        ("slides.pdf", b"%PDF-1.4 not audio"),
        ("long.wav", b"RIFF" + bytes(1_200_000)),
    )
    errors = [e.value for e in at.error]
    assert any("slides.pdf: not a readable audio file" in e for e in errors), errors
    assert any("long.wav: larger than the 1 MB limit" in e for e in errors), errors
    assert not at.exception


def test_two_sessions_at_once_see_only_their_own_results(monkeypatch):
    pages = [page(monkeypatch), page(monkeypatch)]
    uploads = [("angry.wav", ANGRY.read_bytes()), ("sad.wav", SAD.read_bytes())]
    threads = [
        threading.Thread(target=analyse, args=(at, upload))
        for at, upload in zip(pages, uploads, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [s.value for s in pages[0].subheader] == ["angry.wav"]
    assert [s.value for s in pages[1].subheader] == ["sad.wav"]


# ser-live web itself, and the page in a real browser.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout_s: float = 120.0, what: str = "condition", ignoring=()):
    """``condition()``'s first true value; ``ignoring``: exceptions that mean "not yet"
    (an element that the page redrew while it was read)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = condition()
        except ignoring:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def serving(port: int, *extra: str) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("ser-live")
    proc = subprocess.Popen(
        [str(exe), "web", "--port", str(port), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"ser-live web stopped: {proc.stderr.read()}")
        try:  # Streamlit's health check answers once the page is ready
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return True
        except OSError:
            return False

    wait_until(answers, what="the web page to answer")
    return proc


def stop(proc: subprocess.Popen) -> str:
    os.killpg(proc.pid, 2)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
    with proc.stderr:
        return proc.stderr.read()


def test_web_warns_when_it_listens_beyond_this_computer():
    port = free_port()
    proc = serving(port, "--host", "0.0.0.0")
    err = stop(proc)
    assert "warning: listening on 0.0.0.0: anyone who can reach this computer" in err
    assert "Traceback" not in err


def test_web_rejects_a_bad_port_in_one_line():
    proc = run_cli("web", "--port", "70000")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "ser-live: error: --port must be 1-65535, not 70000"


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, "make test installs chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,1400")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.downloads = downloads
    yield driver
    driver.quit()


def test_in_a_real_browser(browser, tmp_path):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    # The page redraws as it runs: an element found may be gone by the time it is used,
    # so each step finds and uses its element in one go, and tries again until it works.
    def wait_for(condition, what: str):
        return wait_until(
            condition, what=what, ignoring=(StaleElementReferenceException, NoSuchElementException)
        )

    def click(css: str, text: str | None = None) -> bool:
        found = [
            e
            for e in browser.find_elements(By.CSS_SELECTOR, css)
            if (text is None or e.text == text) and e.is_enabled()
        ]
        if found:
            found[0].click()
        return bool(found)

    def texts(css: str) -> list[str]:
        return [e.text for e in browser.find_elements(By.CSS_SELECTOR, css)]

    shutil.copy(ANGRY, tmp_path / "angry.wav")
    want = analyze_tables(tmp_path, "angry.wav")["summary"]
    verdict = next(csv.DictReader(io.StringIO(want.decode())))["emotion"]
    notes = tmp_path / "notes.wav"
    notes.write_text("these are meeting notes, not a recording")
    port = free_port()
    server = serving(port)
    try:

        def upload_and_analyse(path: Path) -> None:
            # A fresh page each time: its Analyse button is enabled only once the server
            # holds the upload, so the click cannot come before the file.
            browser.get(f"http://127.0.0.1:{port}/")
            wait_for(
                lambda: (
                    browser.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(path))
                    or True
                ),
                what="the upload field",
            )
            wait_for(lambda: path.name in browser.page_source, what="the upload")
            wait_for(lambda: click("button", "Analyse"), what="the Analyse button")

        upload_and_analyse(tmp_path / "angry.wav")
        overall = wait_for(
            lambda: [
                t for t in texts("[data-testid=stMarkdownContainer]") if t.startswith("Overall:")
            ],
            what="the verdict",
        )
        assert overall[0].startswith(f"Overall: {verdict} ")

        wait_for(lambda: click("button", "Summary CSV"), what="the download button")
        summary = browser.downloads / "summary.csv"
        wait_for(lambda: summary.exists() and summary.stat().st_size > 0, what="the download")
        assert summary.read_bytes() == want

        upload_and_analyse(notes)
        message = wait_for(
            lambda: [t for t in texts("[data-testid=stAlert]") if "not a readable" in t],
            what="the error message",
        )
        assert message[0].startswith("notes.wav: not a readable audio file")
        assert "Traceback" not in browser.page_source
    finally:
        stop(server)


def test_web_without_the_extra_says_what_to_install(tmp_path):
    """Where Streamlit cannot be imported (the web extra not installed), one line says
    what to install."""
    (tmp_path / "streamlit.py").write_text("raise ImportError('No module named streamlit')\n")
    exe = Path(sys.executable).with_name("ser-live")
    proc = subprocess.run(
        [str(exe), "web"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "ser-live: error: the web page needs the web extra: pip install 'ser-live[web]'"
    )


def test_sigterm_stops_the_server_itself():
    """``ser-live web`` is the server's own process: a service manager's SIGTERM to it
    leaves nothing listening behind."""
    port = free_port()
    proc = serving(port)
    proc.terminate()  # to the command's process alone, not its group
    proc.wait(timeout=30)
    proc.stderr.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.2, 0.6])
def test_ctrl_c_while_the_server_starts_ends_without_a_traceback(delay_s):
    """Ctrl-C after the banner, while the server starts (Streamlit's import, its server
    coming up), stops the command with one line, never a traceback; at once too, since
    the banner comes from the process a Ctrl-C stops (docs/web.md)."""
    exe = Path(sys.executable).with_name("ser-live")
    proc = subprocess.Popen(
        [str(exe), "web", "--port", str(free_port())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert "Ctrl-C stops it" in proc.stderr.readline()
        time.sleep(delay_s)  # how far into the start the Ctrl-C comes; any moment will do
        os.killpg(proc.pid, signal.SIGINT)
        # Ours before the server is up (130), Streamlit's graceful stop after (0).
        assert proc.wait(timeout=60) in (0, 130)
        with proc.stderr:
            assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:  # a failed test leaves no server behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
