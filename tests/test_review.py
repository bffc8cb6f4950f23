"""Reviewing a session afterwards: a two-sided session log written by the real engine,
read back, summarised and reported (``ser-live report``)."""

from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import numpy as np
import pytest

from ser_live import EMOTIONS
from tests.conftest import RAVDESS, SPEECH_CLIP, assert_one_line_error, run_cli, write_audio

OTHER_CLIP = RAVDESS / "Actor_02" / "03-01-04-02-01-01-02.flac"  # another actor, sad


@pytest.fixture(scope="module")
def two_sided_log(tmp_path_factory, classifier) -> Path:
    """Both sides of a call through their own engines into one log, as the app writes it:
    "agent" speaks first, "customer" (one second of silence first) after."""
    from ser_live.audio_io import load_audio
    from ser_live.engine import Engine
    from ser_live.session import LiveSession
    from ser_live.session_log import SessionLog
    from ser_live.sources import FileSource

    folder = tmp_path_factory.mktemp("review")
    silence = np.zeros(16_000 * 6, np.float32)
    agent = write_audio(folder / "agent.wav", np.concatenate([load_audio(SPEECH_CLIP), silence]))
    customer = write_audio(
        folder / "customer.wav", np.concatenate([silence, load_audio(OTHER_CLIP)])
    )
    log = SessionLog(folder / "session.csv", list(classifier.spec.labels))
    # Each side on a classifier of its own, as the app runs them: an interpreter is not
    # thread-safe (two sides on one raced, now and then, to a LiteRT RuntimeError).
    sides = [
        LiveSession(Engine(own), FileSource(path), log.side(name, path.name))
        for own, name, path in (
            (classifier, "agent", agent),
            (classifier.clone(), "customer", customer),
        )
    ]
    for side in sides:
        side.start()
    log.write_note("marker", '=HYPERLINK("x") <script>alert(1)</script>', 3.0, time.time())
    log.write_note("marker", "customer escalated", 8.0, time.time())
    for side in sides:
        side._thread.join(60)
        assert side.error is None
    log.close()
    # The cues CSV beside the log, as listen and the app write it.
    from ser_live.conversation import CallMonitor, cues_path

    activities = {"agent": sides[0].engine.activity, "customer": sides[1].engine.activity}
    monitor = CallMonitor(activities, [], cues_csv=cues_path(folder / "session.csv"))
    monitor.poll(final=True)
    monitor.close()
    return folder / "session.csv"


def test_a_session_log_reads_back_per_side(two_sided_log):
    from ser_live.review import load_session, summarise

    record = load_session(two_sided_log)
    assert list(record.tracks) == ["agent", "customer"]  # in the order the sides started
    assert record.labels == list(EMOTIONS)
    agent, customer = record.tracks["agent"], record.tracks["customer"]
    assert agent.source == "agent.wav"
    assert np.all(np.diff(agent.end_s) > 0)
    assert agent.hop_s == pytest.approx(0.5)
    # Each side's speech is where its own recording has it.
    assert agent.end_s[agent.speech].max() < 6.5
    assert customer.end_s[customer.speech].min() > 6.0
    assert [m.text for m in record.markers] == [
        '=HYPERLINK("x") <script>alert(1)</script>',  # the log's protective quote is undone
        "customer escalated",
    ]
    for speaker in record.tracks:
        summary = summarise(record, speaker)
        assert summary.speech_s == pytest.approx(record.tracks[speaker].speech.sum() * 0.5)
        assert summary.speech_s > 1.0
        assert sum(summary.shares.values()) == pytest.approx(1.0)
        for found in summary.peaks.values():
            assert found and found == sorted(found, key=lambda p: -p.probability)
            ends = [p.end_s for p in found]
            assert all(abs(a - b) >= 10.0 for a in ends for b in ends if a != b)


def test_report_command_writes_a_self_contained_html(two_sided_log, tmp_path):
    out = tmp_path / "report.html"
    proc = run_cli("report", str(two_sided_log), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "agent:" in proc.stdout and "customer:" in proc.stdout
    assert "2 markers" in proc.stdout
    page = out.read_text()
    assert page.count("<svg") >= 4  # per side: the share bar and the timeline
    assert "<h2>agent</h2>" in page and "<h2>customer</h2>" in page
    assert "<script>" not in page  # the typed note is text, not markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "src=" not in page and "href=" not in page  # nothing outside the file
    assert "customer escalated" in page
    assert page.count("<h3>Call cues</h3>") == 2  # from session-cues.csv beside the log
    shares = [float(x) for x in re.findall(r"talk share (\d+)%", page)]
    assert len(shares) == 2 and sum(shares) == pytest.approx(100, abs=1.5)


def test_report_reads_an_analyze_timeline(tmp_path):
    timeline = tmp_path / "timeline.csv"
    proc = run_cli("analyze", str(SPEECH_CLIP), str(OTHER_CLIP), "--timeline", str(timeline))
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("report", str(timeline))
    assert proc.returncode == 0, proc.stderr
    page = timeline.with_suffix(".html").read_text()
    assert SPEECH_CLIP.name in page and OTHER_CLIP.name in page


def test_report_refuses_what_is_not_a_log(tmp_path):
    proc = run_cli("report", str(tmp_path / "missing.csv"))
    assert proc.returncode == 1
    assert_one_line_error(proc)
    assert "no such file" in proc.stderr.lower()
    other = tmp_path / "other.csv"
    with open(other, "w", newline="") as f:
        csv.writer(f).writerows([["a", "b"], ["1", "2"]])
    proc = run_cli("report", str(other))
    assert proc.returncode == 1
    assert_one_line_error(proc)
    assert "not a ser-live session log" in proc.stderr
    binary = tmp_path / "noise.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    proc = run_cli("report", str(binary))
    assert proc.returncode == 1
    assert_one_line_error(proc)
