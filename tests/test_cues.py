"""Conversation cues and alert rules: on conversations built from real clips with known
timings, and on crafted probability streams."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import RAVDESS, ROOT

from ser_live import EMOTIONS, SAMPLE_RATE, cues
from ser_live.alerts import DEFAULT_RULES, AlertMonitor, load_rules
from ser_live.audio_io import load_audio
from ser_live.cues import (
    Activity,
    CueSettings,
    SideActivity,
    conversation_cues,
    current_silence_s,
    interruptions,
    median_level,
    median_pitch,
    on_session_grid,
    pace,
    runs,
    without_hangover,
)
from ser_live.errors import SerLiveError
from ser_live.vad import VoiceActivityDetector

TESS = ROOT / "tests" / "fixtures" / "corpus" / "tess"
#: RAVDESS statements: "Kids are talking by the door", "Dogs are sitting by the door".
RAVDESS_SYLLABLES = 7
#: TESS: "Say the word back".
TESS_SYLLABLES = 4


def speech_only(path) -> np.ndarray:
    """A clip cut to its speech (30 ms frames within 30 dB of its loudest)."""
    x = load_audio(path)
    frames = x[: len(x) // 480 * 480].reshape(-1, 480)
    db = 10 * np.log10((frames**2).mean(axis=1) + 1e-12)
    loud = np.flatnonzero(db > db.max() - 30)
    return x[loud[0] * 480 : (loud[-1] + 1) * 480]


def heard(samples: np.ndarray) -> Activity:
    """A side's activity as the engine's VAD (its default settings) hears it."""
    vad = VoiceActivityDetector(2, 8, -65.0, -36.0)
    side = SideActivity(hangover_frames=8)
    for i in range(0, len(samples), 320):
        block = samples[i : i + 320]
        side.feed(block, vad.process(block))
    return side.snapshot()


def place(total_s: float, pieces: list[tuple[float, np.ndarray]]) -> np.ndarray:
    out = np.zeros(round(total_s * SAMPLE_RATE), np.float32)
    for at_s, clip in pieces:
        i = round(at_s * SAMPLE_RATE)
        out[i : i + len(clip)] += clip
    return out


def built_call() -> tuple[np.ndarray, np.ndarray, dict]:
    """Two sides built from real sentences at known times, and what the cues must say.

    agent:    A1 1.00-3.01            A2 5.00-6.95                      A3 12.50-14.51
    customer:        B1 3.81-5.49 (A2 interrupts: B1 stops 0.49 s later)  B2 11.50-15.13
    A 4.55 s silence (6.95-11.50), a 0.8 s gap (not a silence), and B2 goes on 2.6 s after
    A3 starts (an overlap, not an interruption)."""
    a = speech_only(RAVDESS / "Actor_01" / "03-01-05-02-01-01-01.flac")
    b = speech_only(RAVDESS / "Actor_02" / "03-01-04-02-01-01-02.flac")
    d = speech_only(RAVDESS / "Actor_04" / "03-01-07-02-01-01-04.flac")
    la, lb, ld = (len(x) / SAMPLE_RATE for x in (a, b, d))
    agent = place(16.2, [(1.0, a), (5.0, d), (12.5, a)])
    customer = place(16.2, [(1.0 + la + 0.8, b), (11.5, np.concatenate([d, b]))])
    b1_end = 1.0 + la + 0.8 + lb
    expected = {
        "agent_talk_s": 2 * la + ld,
        "customer_talk_s": 2 * lb + ld,
        "overlap_s": (b1_end - 5.0) + la,
        "silence_s": 11.5 - (5.0 + ld),
    }
    return agent, customer, expected


def test_runs_and_hangover_removal():
    mask = np.array([0, 1, 1, 1, 1, 0, 0, 1, 1, 1], bool)
    starts, ends = runs(mask)
    assert starts.tolist() == [1, 7] and ends.tolist() == [5, 10]
    assert without_hangover(mask, 2).tolist() == [0, 1, 1, 0, 0, 0, 0, 1, 0, 0]


def test_hangover_removal_takes_each_runs_tail_and_no_more():
    """On random masks, against the definition run by run: a run's last frames go, a run
    shorter than the hangover goes whole, runs at either edge included."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        mask = rng.random(int(rng.integers(1, 60))) < rng.uniform(0.2, 0.9)
        hangover = int(rng.integers(0, 8))
        expected = mask.copy()
        if hangover:
            for start, end in zip(*runs(mask), strict=True):
                expected[max(start, end - hangover) : end] = False
        assert without_hangover(mask, hangover).tolist() == expected.tolist()


def test_a_spans_level_and_pitch_are_the_whole_sessions_frames_cut_to_it():
    """The level and pitch of any span (on the VAD's grid or not, past either end) read
    only its frames, as the whole session's 10 ms grid has them."""
    rng = np.random.default_rng(3)
    frames = 4000  # two minutes of 30 ms VAD frames, 3 envelope frames each
    speech = rng.random(frames) < 0.6
    levels = rng.normal(-30, 6, 3 * frames - 2).astype(np.float32)  # a block's carry
    voiced = rng.random(len(levels)) < 0.7
    pitch = rng.normal(24, 3, len(levels)).astype(np.float32)
    activity = Activity(4.0, speech, levels, voiced, pitch)
    spread = np.repeat(speech, 3)[: len(levels)]
    spans = [(4.0, activity.end_s), (0.0, 500.0), (100.0, 130.0), (123.45, 124.01)]
    spans += [tuple(sorted(rng.uniform(0.0, 130.0, 2))) for _ in range(50)]
    for span in spans:
        first = max(0, round((span[0] - 4.0) / 0.01))
        last = max(first, round((span[1] - 4.0) / 0.01))
        keep = spread[first:last]
        level, tone = median_level(activity, span), median_pitch(activity, span)
        if not keep.any():
            assert level is None
            continue
        assert level == pytest.approx(float(np.median(levels[first:last][keep])))
        keep = keep & voiced[first:last]
        if keep.sum() * 0.01 < 1.0:
            assert tone is None
        else:
            assert tone == pytest.approx(float(np.median(pitch[first:last][keep])))


@pytest.mark.parametrize(
    ("unsettled_s", "take_in_s", "late_s"),
    [(cues.UNSETTLED_S, cues.TAKE_IN_S, 2.5), (cues.UNSETTLED_S, 0.3, 2.5), (0.0, 0.3, 0.3)],
)
def test_a_live_sides_whole_session_medians_are_those_of_all_its_frames(
    unsettled_s, take_in_s, late_s, monkeypatch
):
    """Fed block by block, with each window's pitch written up to ``late_s`` behind the
    end, and now and then far further back (a past taken as settled, and then not),
    every snapshot's whole-session level, pitch and pace are those of all its frames, to
    the bit; so are an older snapshot's, worked out again after a newer one's. Taking
    in the settled past every block as well as every minute; and with no margin for late
    pitches (pitch written only for the block just fed), where what keeps it exact is
    the VAD's hangover held back."""
    monkeypatch.setattr(cues, "UNSETTLED_S", unsettled_s)
    monkeypatch.setattr(cues, "TAKE_IN_S", take_in_s)
    rng = np.random.default_rng(11)
    side = SideActivity(hangover_frames=8)
    snapshots, far_back, talking = [], 0, True
    for block in range(240):  # 72 s in blocks of 0.3 s (10 VAD frames)
        # Turns of a few blocks: a hum whose level swells and falls like syllables.
        talking ^= bool(rng.random() < 0.3)
        t = (block * 4800 + np.arange(4800)) / SAMPLE_RATE
        swell = (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(3, 6) * t)) ** 2
        samples = rng.uniform(0.01, 0.3) * swell * np.sin(2 * np.pi * 140 * t)
        side.feed(samples.astype(np.float32), np.full(10, talking) & (rng.random(10) < 0.95))
        if block % 50 == 49:  # far back, and far off the voice's pitch: the medians move
            side.add_pitch(30.0, np.full(300, 60.0 + block, np.float32))
            far_back += 1
        side.add_pitch(rng.uniform(0.3, late_s), rng.normal(24, 4, 30).astype(np.float32))
        snapshots.append(side.snapshot())
        older = replace(snapshots[len(snapshots) // 2], measured={})
        for snap in (snapshots[-1], older):
            whole = (snap.offset_s, snap.end_s)
            plain = replace(snap, settled=None, measured={}, nuclei={})
            assert median_level(snap, whole) == median_level(plain, whole)
            assert median_pitch(snap, whole) == median_pitch(plain, whole)
            assert pace(snap, whole, CueSettings()) == pace(plain, whole, CueSettings())
    # The settled past was used, and begun again only where a write went behind it.
    assert snapshots[-1].settled.until > 0 and snapshots[-1].settled.turns_until > 0
    assert len({id(snap.settled) for snap in snapshots}) == 1 + far_back


def test_a_snapshot_stays_as_it_was_while_its_side_goes_on():
    """A snapshot shares the arrays a side only extends: what the side hears next (past
    its storage's growth, and pitch written behind the end) leaves the snapshot as it was
    and cannot be changed through it."""
    rng = np.random.default_rng(2)
    side = SideActivity(hangover_frames=8)
    side.feed(rng.normal(0, 0.1, 4800).astype(np.float32), rng.random(10) < 0.5)
    side.add_pitch(0.3, np.full(30, 20.0, np.float32))
    snap = side.snapshot()
    was = [snap.speech.copy(), snap.level_db.copy(), snap.voiced.copy(), snap.pitch_st.copy()]
    for _ in range(50):  # 15 s: the 10 ms arrays outgrow their first storage
        side.feed(rng.normal(0, 0.3, 4800).astype(np.float32), rng.random(10) < 0.5)
        side.add_pitch(15.0, np.full(1500, 30.0, np.float32))
    now = [snap.speech, snap.level_db, snap.voiced, snap.pitch_st]
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(was, now, strict=True))
    with pytest.raises(ValueError):
        snap.level_db[0] = 0.0


def test_interruptions_match_their_definition_turn_by_turn():
    """On random masks, against the definition turn by turn."""
    rng = np.random.default_rng(5)
    for _ in range(300):
        n = int(rng.integers(1, 200))
        mine, others = (rng.random(n) < rng.uniform(0.1, 0.9, 2)[:, None]).repeat(3, axis=1)
        within = int(rng.integers(1, 20))
        expected = 0
        other_ends = runs(others)[1]
        for start, end in zip(*runs(mine), strict=True):
            if start == 0 or not (others[start] and others[start - 1]):
                continue
            stop = other_ends[np.searchsorted(other_ends, start, side="right")]
            expected += stop < len(others) and stop - start <= within and end >= stop
        assert interruptions(mine, others, within * 0.03) == expected


def test_cues_of_a_built_call_are_within_a_few_frames_of_its_timings():
    agent, customer, expected = built_call()
    cues = conversation_cues({"agent": heard(agent), "customer": heard(customer)})
    you, other = cues["agent"], cues["customer"]
    assert you.talk_s == pytest.approx(expected["agent_talk_s"], abs=0.2)
    assert other.talk_s == pytest.approx(expected["customer_talk_s"], abs=0.2)
    assert you.talk_share + other.talk_share == pytest.approx(1.0)
    assert you.overlaps == other.overlaps == 2
    assert you.overlap_s == pytest.approx(expected["overlap_s"], abs=0.2)
    assert (you.interruptions, other.interruptions) == (1, 0)
    assert you.silences == 1
    assert you.longest_silence_s == pytest.approx(expected["silence_s"], abs=0.2)
    # The last 5 s: the overlap of A3 and B2 only, and no silence in it.
    recent = conversation_cues({"agent": heard(agent), "customer": heard(customer)}, last_s=5.0)
    assert recent["agent"].overlaps == 1 and recent["agent"].silences == 0
    assert recent["agent"].talk_s == pytest.approx(expected["agent_talk_s"] / 3, abs=0.2)


def test_an_interruption_needs_the_other_to_stop_within_the_setting():
    agent, customer, _ = built_call()
    activities = {"agent": heard(agent), "customer": heard(customer)}
    # B1 stopped 0.49 s after A2 started: within 1 s, not within 0.3 s.
    strict = conversation_cues(activities, CueSettings(interruption_s=0.3))
    assert strict["agent"].interruptions == 0
    # B2 outlasted A3: never an interruption, however long the setting.
    loose = conversation_cues(activities, CueSettings(interruption_s=5.0))
    assert loose["agent"].interruptions == 1


def test_a_rolling_span_and_the_current_silence_are_those_of_the_whole_grid():
    """Sides starting and ending anywhere on the session clock: a rolling span's cues
    are the whole session's grid cut to the span, and the current silence counts from
    the last speech on that grid."""
    rng = np.random.default_rng(9)
    for _ in range(300):
        activities = {
            side: Activity(
                round(rng.uniform(0, 20)) * 0.03 if rng.random() < 0.7 else rng.uniform(0, 1),
                np.concatenate(  # now and then a long quiet end
                    [
                        rng.random(int(rng.integers(0, 400))) < rng.uniform(0, 0.5),
                        np.zeros(int(rng.integers(0, 20000)) * (rng.random() < 0.3), bool),
                    ]
                ),
                np.zeros(0, np.float32),
                np.zeros(0, bool),
            )
            for side in ("you", "them", "third")[: int(rng.integers(1, 4))]
        }
        start = min(a.offset_s for a in activities.values())
        n = round((max(a.end_s for a in activities.values()) - start) / 0.03)
        whole = {}
        for side, a in activities.items():
            at = round((a.offset_s - start) / 0.03)
            whole[side] = np.zeros(n, bool)
            piece = a.speech[: max(0, n - at)]
            whole[side][at : at + len(piece)] = piece
        last_s = float(rng.choice([0.5, 3.0, 10.0, 60.0]))
        first = max(0, n - round(last_s / 0.03))
        grid_start, grid_first, grid = on_session_grid(activities, last_s)
        assert (grid_start, grid_first) == (start, first)
        for side in activities:
            assert grid[side].tolist() == whole[side][first:].tolist()
        anyone = np.flatnonzero(np.logical_or.reduce(list(whole.values())))
        expected = 0.0 if len(anyone) == 0 else (n - 1 - anyone[-1]) * 0.03
        assert current_silence_s(activities) == expected


def test_current_silence_counts_from_the_last_speech():
    agent, customer, _ = built_call()
    activities = {"agent": heard(agent), "customer": heard(customer)}
    assert current_silence_s(activities) == pytest.approx(16.2 - 15.13, abs=0.2)
    assert current_silence_s({"agent": heard(np.zeros(SAMPLE_RATE, np.float32))}) == 0.0


@pytest.mark.parametrize(
    ("clips", "syllables"),
    [(sorted(RAVDESS.glob("*/*.flac")), RAVDESS_SYLLABLES), (sorted(TESS.glob("*/*")), 4)],
)
def test_pace_counts_the_syllables_of_known_sentences(clips, syllables):
    counted = []
    for clip in clips:
        activity = heard(place(4.0, [(0.5, speech_only(clip))]))
        cues = conversation_cues({"you": activity})["you"]
        counted.append(round(cues.pace_syll_per_s * cues.talk_s))
    # The method is an estimate (docs/cues.md): each clip within 3 syllables, the mean
    # within one.
    assert all(abs(c - syllables) <= 3 for c in counted), counted
    assert abs(np.mean(counted) - syllables) <= 1.0, counted


def probabilities(**values: float) -> np.ndarray:
    p = np.zeros(len(EMOTIONS), np.float32)
    for emotion, value in values.items():
        p[EMOTIONS.index(emotion)] = value
    p[0] += 1 - p.sum()
    return p


def test_an_emotion_rule_fires_once_per_episode():
    monitor = AlertMonitor(DEFAULT_RULES)
    stream = (
        [probabilities(angry=0.8)] * 12  # 6 s angry: fires once, at 5 s held
        + [None] * 4  # a pause neither holds nor clears
        + [probabilities(angry=0.7)] * 6  # still the same episode
        + [probabilities(angry=0.2)]  # clears
        + [probabilities(angry=0.9)] * 12  # a new episode: fires again
    )
    fired = []
    for i, p in enumerate(stream):
        fired += monitor.on_update("other", 2.0 + 0.5 * i, p)
        fired += monitor.on_update("you", 2.0 + 0.5 * i, p)  # the rule is the other side's
    assert [(a.rule.name, a.side, a.at_s) for a in fired] == [
        ("sustained anger", "other", 7.0),
        ("sustained anger", "other", 2.0 + 0.5 * 23 + 5.0),
    ]


def test_cue_rules_fire_once_and_again_after_clearing():
    monitor = AlertMonitor(DEFAULT_RULES)
    quiet = [
        monitor.on_cues(t, {}, silence_s=s, session_s=t)
        for t, s in enumerate([0, 4, 11, 12, 0, 15])
    ]
    assert [len(a) for a in quiet] == [0, 0, 1, 0, 0, 1]
    assert quiet[2][0].note == "alert: long silence"


def test_rules_file_is_read_and_a_bad_one_names_its_line(tmp_path):
    good = tmp_path / "rules.toml"
    good.write_text(
        '[[rule]]\nname = "caller angry"\nside = "other"\nemotion = "angry"\n'
        'min_probability = 0.6\nfor_s = 5\n\n[[rule]]\nname = "hog"\nside = "you"\n'
        "talk_share_above = 0.7\nover_s = 120\n"
    )
    rules = load_rules(good, ["you", "other"])
    assert [r.kind for r in rules] == ["emotion", "talk_share"]
    cases = {
        '[[rule]]\nname = "x"\nemotion = "furious"\nmin_probability = 0.6\nfor_s = 5\n': (
            "line 3: unknown emotion 'furious'"
        ),
        '[[rule]]\nname = "x"\nsilence_longer_than_s = 10\ncolour = "red"\n': (
            "line 4: unknown setting 'colour'"
        ),
        '[[rule]]\nname = "x"\nsilence_longer_than_s = "ten"\n': "line 3: 'silence_longer_than_s'",
        '[[rule]]\nname = "x"\nside = "boss"\ntalk_share_above = 0.5\nover_s = 60\n': (
            "line 3: unknown side 'boss'"
        ),
        '[[rule]]\nname = "x"\nmin_probability = 0.6\nfor_s = 5\n': "needs 'emotion'",
        '[[rule]\nname = "x"\n': "line 1",
    }
    for text, message in cases.items():
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(SerLiveError, match=message):
            load_rules(bad, ["you", "other"])


def read_rows(path) -> list[dict]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_analyze_cues_of_a_stereo_call_one_row_per_side(tmp_path):
    """``analyze --channels split --cues``: the channels are the sides of one call."""
    import soundfile as sf
    from conftest import SPEECH_CLIP, assert_one_line_error, run_cli

    agent, customer, expected = built_call()
    call = tmp_path / "call.wav"
    sf.write(call, np.column_stack([agent, customer]), SAMPLE_RATE, subtype="PCM_16")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file")
    out = tmp_path / "cues.csv"
    proc = run_cli("analyze", str(call), str(broken), "--channels", "split", "--cues", str(out))
    assert proc.returncode == 3, proc.stderr  # one file failed, the other was analysed
    assert_one_line_error(proc)
    rows = {(Path(r["file"]).name, r["side"]): r for r in read_rows(out)}
    one, two = rows[("call.wav", "1")], rows[("call.wav", "2")]
    assert float(one["talk_s"]) == pytest.approx(expected["agent_talk_s"], abs=0.3)
    assert float(two["talk_s"]) == pytest.approx(expected["customer_talk_s"], abs=0.3)
    assert float(one["talk_share"]) + float(two["talk_share"]) == pytest.approx(1.0, abs=0.002)
    assert float(one["overlap_s"]) == pytest.approx(expected["overlap_s"], abs=0.3)
    assert (one["interruptions"], two["interruptions"]) == ("1", "0")
    assert float(one["longest_silence_s"]) == pytest.approx(expected["silence_s"], abs=0.3)
    assert 2.0 < float(one["pace_syll_per_s"]) < 6.0
    assert rows[("broken.wav", "1")]["error"] and not one["error"]
    # One file alone (the down-mix): one side with all the talk.
    mono = tmp_path / "mono.csv"
    assert run_cli("analyze", str(SPEECH_CLIP), "--cues", str(mono)).returncode == 0
    (row,) = read_rows(mono)
    assert row["side"] == "mix" and row["talk_share"] == "1.000" and row["interruptions"] == "0"


def test_pitch_against_the_voices_own_baseline(engine):
    """The same sentence, then raised by 3 semitones: the rolling pitch cue says +3 against
    that span alone, and the session's median lies between."""
    import soxr

    from ser_live.cues import median_pitch

    clip = speech_only(RAVDESS / "Actor_01" / "03-01-05-02-01-01-01.flac")
    raised = soxr.resample(clip, SAMPLE_RATE, SAMPLE_RATE / 2 ** (3 / 12)).astype(np.float32)
    gap = np.zeros(SAMPLE_RATE, np.float32)
    stream = np.concatenate([gap, clip, clip, gap, raised, raised, gap])
    for i in range(0, len(stream), 320):
        engine.feed(stream[i : i + 320])
    activity = engine.activity.snapshot()
    first_end = (len(gap) + 2 * len(clip)) / SAMPLE_RATE
    before = median_pitch(activity, (0.0, first_end))
    after = median_pitch(activity, (first_end + 1.0, activity.end_s))
    assert before is not None and after is not None
    assert after - before == pytest.approx(3.0, abs=0.6)
    last_s = activity.end_s - first_end - 1.0
    (side,) = conversation_cues({"you": activity}, last_s=last_s).values()
    session = conversation_cues({"you": activity})["you"]
    assert 0.8 < side.pitch_st < 3.0  # the session's median lies between the two
    assert 80 < session.pitch_hz < 400 and session.pitch_st is None


def test_replayed_alerts_of_a_recording_fire_once_per_episode():
    """A recording's sides replayed as a live session hears them: side 1 speaks 0-5 s,
    then nobody for 12 s, then side 2 is angry 17-23 s, calm for a window, angry again."""
    from types import SimpleNamespace

    from ser_live.conversation import replay_alerts
    from ser_live.cues import FRAME_S

    def activity(*spans: tuple[float, float]) -> Activity:
        t = np.arange(round(35.0 / FRAME_S)) * FRAME_S
        speech = np.logical_or.reduce([(t >= a) & (t < b) for a, b in spans])
        return Activity(0.0, speech, np.zeros(0, np.float32), np.zeros(0, bool))

    def updates(spans: list[tuple[float, float, np.ndarray]]):
        return [
            SimpleNamespace(end_s=end, speech=True, probabilities=p)
            for a, b, p in spans
            for end in np.arange(a + 0.5, b + 0.01, 0.5)
        ]

    calm, angry = probabilities(neutral=0.9), probabilities(angry=0.9)
    sides = {
        "1": (updates([(0.0, 5.0, calm)]), activity((0.0, 5.0))),
        "2": (
            updates([(17.0, 23.0, angry), (23.0, 23.5, calm), (23.5, 34.0, angry)]),
            activity((17.0, 34.0)),
        ),
    }
    rules = [replace(r, side=None) for r in DEFAULT_RULES]
    fired = [(a.rule.name, a.side, a.at_s) for a in replay_alerts(sides, rules)]
    assert [f[:2] for f in fired] == [
        ("long silence", None),
        ("sustained anger", "2"),
        ("sustained anger", "2"),
    ]
    assert fired[0][2] == pytest.approx(15.0, abs=1.01)  # 10 s after the last speech
    assert fired[1][2] == pytest.approx(22.5)  # angry from the window ending at 17.5
    assert fired[2][2] == pytest.approx(29.0)  # again from 24.0, after the calm window


def test_analyze_alerts_on_a_stereo_call(tmp_path):
    """``analyze --alerts`` checks the rules on each file's sides as a live session
    would, prints each alert and logs it; a bad rules file stops it before any output."""
    import soundfile as sf
    from conftest import assert_one_line_error, run_cli

    agent, customer, expected = built_call()
    call = tmp_path / "call.wav"
    sf.write(call, np.column_stack([agent, customer]), SAMPLE_RATE, subtype="PCM_16")
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "gap"\nsilence_longer_than_s = 4\n\n'
        '[[rule]]\nname = "crosstalk"\noverlaps_per_minute_above = 1\n'
    )
    log = tmp_path / "alerts.csv"
    args = ("analyze", str(call), "--channels", "split", "--alerts", str(rules))
    proc = run_cli(*args, "--alert-log", str(log))
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(log)
    assert [(r["rule"], r["side"]) for r in rows] == [("gap", ""), ("crosstalk", "")]
    silence_starts_s = 11.5 - expected["silence_s"]
    assert float(rows[0]["at_s"]) == pytest.approx(silence_starts_s + 4.0, abs=1.3)
    assert 11.5 <= float(rows[1]["at_s"]) <= 14.0  # the second overlap: B2 then A3
    assert proc.stdout.count("ALERT") == 2
    assert "ALERT  gap (silence longer than 4 s)" in proc.stdout

    rules.write_text(
        '[[rule]]\nname = "x"\nside = "other"\nemotion = "angry"\nmin_probability = 0.6\n'
        "for_s = 5\n"
    )
    bad_log = tmp_path / "never.csv"
    proc = run_cli(*args, "--alert-log", str(bad_log), "--summary", str(tmp_path / "s.csv"))
    assert proc.returncode == 1
    assert_one_line_error(proc)
    assert "line 3: unknown side 'other'" in proc.stderr
    assert not bad_log.exists() and not (tmp_path / "s.csv").exists()
