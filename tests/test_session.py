"""The session worker: what it writes, and how it reports a failure."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest

from ser_live.engine import Engine
from ser_live.session import LiveSession
from ser_live.session_log import SessionLog
from ser_live.sources import FileSource
from tests.conftest import SPEECH_CLIP, truncated_flac


def read_log(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def wait_until_done(session: LiveSession) -> None:
    deadline = time.monotonic() + 60
    while session.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not session.running


def test_session_logs_every_window_and_markers(classifier, tmp_path):
    log = SessionLog(tmp_path / "s.csv", list(classifier.spec.labels))
    side = log.side("agent", "file")
    session = LiveSession(Engine(classifier), FileSource(SPEECH_CLIP), side, time_offset_s=10.0)
    session.start()
    wait_until_done(session)
    log.write_note("marker", "after the end", session.session_s, time.time())
    log.close()
    rows = read_log(tmp_path / "s.csv")
    windows = [r for r in rows if r["kind"] == "window"]
    assert [float(r["start_s"]) for r in windows] == [10.0, 10.5, 11.0, 11.5, 12.0]
    phrases = [r for r in rows if r["kind"] == "phrase"]
    assert len(phrases) == 1  # the clip's speech, closed when the file ends
    assert float(phrases[0]["start_s"]) >= 10.0 and phrases[0]["speaker"] == "agent"
    assert [r["note"] for r in rows if r["kind"] in ("event", "marker")] == [
        "opening " + str(SPEECH_CLIP),
        "started: " + str(SPEECH_CLIP),
        "stopped; 0 blocks dropped",
        "after the end",
    ]
    assert [r["speaker"] for r in rows] == ["agent"] * (len(rows) - 1) + [""]  # a session note
    assert float(rows[-1]["start_s"]) == pytest.approx(10.0 + session.engine.stream_s, abs=0.01)
    updates, blocks = session.pop_updates()
    assert len(updates) == 5 and sum(len(b) for b in blocks) > 60_000


def test_a_failing_source_is_reported_not_lost(classifier, tmp_path, speech):
    broken = truncated_flac(tmp_path / "broken.flac", np.tile(speech, 3))
    log = SessionLog(tmp_path / "s.csv", list(classifier.spec.labels))
    session = LiveSession(Engine(classifier), FileSource(broken), log.side("you", "file"))
    session.start()
    wait_until_done(session)
    log.close()
    rows = read_log(tmp_path / "s.csv")
    assert sum(r["kind"] == "window" for r in rows) >= 10  # 8 s analysed before the break
    assert "truncated or corrupt audio" in str(session.error)
    assert rows[-1]["kind"] == "event" and rows[-1]["note"].startswith("error:")


def test_formula_like_notes_and_sources_are_neutralised(classifier, tmp_path):
    log = SessionLog(tmp_path / "s.csv", list(classifier.spec.labels))
    side = log.side("=cmd|' /C calc'!A0", "@device")  # a speaker name the user typed
    notes = ['=HYPERLINK("http://x","click")', "+A1", "-2+3", "@SUM(A1)", "\tx", "\rx", "ok"]
    for note in notes:
        side.write_note("marker", note, 1.5, time.time())
    side.write_note("marker", "-12.5", -3.0, time.time())  # a number stays a number
    log.close()
    rows = read_log(tmp_path / "s.csv")
    assert [r["note"] for r in rows] == ["'" + n for n in notes[:-1]] + ["ok", "-12.5"]
    assert {r["source"] for r in rows} == {"'@device"}
    assert {r["speaker"] for r in rows} == {"'=cmd|' /C calc'!A0"}
    assert rows[-1]["start_s"] == "-3.00"
