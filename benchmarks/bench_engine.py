"""Engine benchmark: speed, latency, start-up and memory. ``make bench`` prints the figures.

1. analyze's real-time factor over 10 minutes of speech in 20 files, one worker per core
   as ``ser-live analyze`` runs them: the whole command (interpreter start included), and
   the workers alone; then the opt-in voice shifts (``--voice-shifts``), in one process;
2. per-update processing time in live mode (20 ms blocks, as from a microphone), with the
   speaker calibration that ``listen`` and the app use by default, and with voice shifts;
3. time from process start to the first prediction, in a fresh process (nothing to
   compile: the runtime has no numba);
4. resident memory over a simulated one-hour live session, session log included;
5. one inference of the int8 model on one core;
6. the call's cues, both sides, as a call grows to three hours (what the app's UI thread
   works out every second).

The default path is our networks alone; 1 to 4 also measure the opt-in phrase-level
second opinion (``--second-opinion``: ``models/dusha_ser.onnx``) and print the ratio. 4
also works out the call's cues every second, as ``listen`` and the app do.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ser_live import ONE_BLAS_THREAD

os.environ.update({**ONE_BLAS_THREAD, **os.environ})  # as the command line runs

import numpy as np
import soundfile as sf

from benchmarks.common import rss_mb, speech_stream, speech_stream_apart
from ser_live.alerts import DEFAULT_RULES, FILE_RULES
from ser_live.analysis import EngineOptions, Task, analyze_file, analyze_many, default_jobs
from ser_live.conversation import CallMonitor
from ser_live.cues import SideActivity
from ser_live.engine import Engine
from ser_live.model import Classifier, load_model
from ser_live.second_opinion import load_second_opinion
from ser_live.session_log import SessionLog

FIRST_PREDICTION = """
import time; t0 = time.perf_counter()
import numpy as np
from ser_live.engine import Engine
from ser_live.model import load_model
from ser_live.second_opinion import load_second_opinion
from ser_live.audio_io import load_audio
opinion = load_second_opinion() if {opinion} else None
if opinion is not None:
    opinion.warm_up()
engine = Engine(load_model(), calibrate=True, second_opinion=opinion); engine.warm_up()
audio = load_audio(r"{clip}")
for i in range(0, len(audio), 320):
    if any(u.speech for u in engine.feed(audio[i:i + 320])):
        break
print(time.perf_counter() - t0)
"""


BLOCK = 320  # 20 ms, as from a microphone


def live_update_ms(engine: Engine, audio: np.ndarray, block: int = BLOCK) -> list[float]:
    """Milliseconds of each ``feed`` call that completed a window."""
    engine.reset()
    times = []
    for i in range(0, len(audio), block):
        t = time.perf_counter()
        updates = engine.feed(audio[i : i + block])
        if updates:
            times.append((time.perf_counter() - t) * 1000)
    return times


def main() -> None:
    classifier = load_model()
    opinion = load_second_opinion()
    engine = Engine(classifier)  # the default: the networks alone
    engine.warm_up()
    with_opinion_engine = Engine(classifier, second_opinion=opinion)  # --second-opinion
    files = [n.path for n in classifier.networks]
    print(
        f"model: {' + '.join(f.name for f in files)}, "
        f"{sum(f.stat().st_size for f in files) / 1024:.0f} KiB, int8={classifier.quantized}"
    )

    # 1. Real-time factor of analyze over 20 files, both cores, and with the voice shifts.
    audio = speech_stream(620)
    duration = len(audio) / 16000
    # The same networks without the model's utterance head, to measure what it costs.
    headless = (
        Classifier(classifier.path, replace(classifier.spec, utterance_head=None))
        if classifier.spec.utterance_head
        else None
    )
    # A model scored without voice shifts lists none and refuses them (the shipped one).
    shifted_engine = Engine(classifier, voice_shifts=True) if classifier.spec.voice_shifts else None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "calls"
        folder.mkdir()
        per_file = len(audio) // 20
        for i in range(20):
            part = audio[i * per_file : (i + 1) * per_file]
            sf.write(folder / f"call{i:02d}.wav", part, 16000, subtype="PCM_16")
        exe = Path(sys.executable).parent / "ser-live"
        t0 = time.perf_counter()
        subprocess.run(
            [str(exe), "analyze", str(folder), "--summary", str(Path(tmp) / "s.csv")],
            check=True,
            capture_output=True,
        )
        command_s = time.perf_counter() - t0
        tasks = [Task(p) for p in sorted(folder.iterdir())]
        t0 = time.perf_counter()
        results = list(analyze_many(tasks, EngineOptions(), jobs=default_jobs()))
        pool_s = time.perf_counter() - t0
        assert all(r.error is None for r in results)
        speech_s = sum(r.speech_s for r in results)
        print(
            f"analyze: {duration / 60:.1f} min of audio ({speech_s / 60:.1f} min speech) in 20 "
            f"files, {default_jobs()} processes: whole command {command_s:.2f} s = "
            f"{duration / command_s:.0f}x real time; after start-up ({pool_s:.2f} s incl. "
            f"worker start) = {duration / pool_s:.0f}x"
        )
        # One core, one file, with and without the second opinion: interleaved, best of
        # three each, as a busy machine spreads single runs more than the difference.
        with_opinion, networks_alone = [], []
        for _ in range(3):
            for times, each in ((networks_alone, engine), (with_opinion, with_opinion_engine)):
                t0 = time.perf_counter()
                one = analyze_file(tasks[0].path, each)
                times.append(time.perf_counter() - t0)
                assert one.error is None
        one_s = min(networks_alone)
        line = (
            f"one core, one file of {one.duration_s:.0f} s, best of 3: "
            f"{one.duration_s / one_s:.0f}x real time; --second-opinion "
            f"{one.duration_s / min(with_opinion):.0f}x: it costs "
            f"{min(with_opinion) / one_s:.2f}x the time"
        )
        if shifted_engine is not None:
            t0 = time.perf_counter()
            shifted = analyze_file(tasks[0].path, shifted_engine)
            shifted_s = time.perf_counter() - t0
            assert shifted.error is None
            line += (
                f"; --voice-shifts: {one.duration_s / shifted_s:.0f}x ({shifted_s / one_s:.1f}x "
                "the time)"
            )
        else:
            line += " (the model lists no voice shifts: none measured)"
        print(line)
        alerts_on_a_recording(engine, audio, one.duration_s / one_s)
        if headless is not None:
            # analyze --calibrate, which runs the utterance head, against the same networks
            # without it. Interleaved, best of three each: the head's share is smaller than
            # the spread between single runs on a busy machine.
            with_head, without = [], []
            calibrated = Engine(classifier, calibrate=True)
            for _ in range(3):
                for times, each in (
                    (with_head, calibrated),
                    (without, Engine(headless, calibrate=True)),
                ):
                    t0 = time.perf_counter()
                    assert analyze_file(tasks[0].path, each).error is None
                    times.append(time.perf_counter() - t0)
            print(
                f"one core, one file, --calibrate, best of 3: "
                f"{one.duration_s / min(with_head):.0f}x real time; the networks alone (no "
                f"utterance head): "
                f"{one.duration_s / min(without):.0f}x; the head costs "
                f"{min(with_head) / min(without):.3f}x the time"
            )

    # 2. Per-update latency in live mode (20 ms blocks, as from a microphone), calibrated as
    # listen and the app run by default; live engines, as they build them (the second
    # opinion, where asked for, on a thread of its own). The first one sets glibc's
    # allocator for the whole process (ser_live.allocator), as in the app: so after the
    # figures of analyze above, which never sets it.
    def live(network: Classifier | None, **options) -> Engine | None:
        return None if network is None else Engine(network, background_phrases=True, **options)

    for name, each in (
        ("live update (calibrated: the default)", lambda: live(classifier, calibrate=True)),
        ("live update, not calibrated", lambda: live(classifier)),
        (
            "live update (calibrated), the networks alone (no utterance head)",
            lambda: live(headless, calibrate=True),
        ),
        ("live update, --voice-shifts", lambda: shifted_engine),
        (
            "live update (calibrated), --second-opinion on its own thread",
            lambda: live(classifier, calibrate=True, second_opinion=opinion),
        ),
    ):
        each = each()
        if each is None:
            continue
        times = live_update_ms(each, audio)
        p50, p99 = np.percentile(times, [50, 99])
        print(
            f"{name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(times):.2f} ms "
            f"over {len(times)} updates (20 ms blocks)"
        )

    # 3. Start to first prediction, fresh processes.
    clip = (
        Path(__file__).resolve().parent.parent
        / "tests/fixtures/corpus/ravdess/Actor_01/03-01-05-02-01-01-01.flac"
    )
    for name, with_opinion in (("", False), (", --second-opinion", True)):
        firsts = []
        for _ in range(3):
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", FIRST_PREDICTION.format(clip=clip, opinion=with_opinion)],
                capture_output=True,
                text=True,
                check=True,
            )
            firsts.append((float(out.stdout.strip()), time.perf_counter() - t0))
        inside = [f[0] for f in firsts]
        print(
            f"start to first prediction (fresh process{name}): {min(inside):.2f} s "
            f"(runs: {', '.join(f'{x:.2f}' for x in inside)} s; interpreter start adds "
            f"{np.median([w - i for i, w in firsts]):.2f} s)"
        )

    # 4. Memory over a simulated hour-long live session, with its log.
    # The hour is the 10 minutes above played six times, streamed block by block: the
    # process holds only those 10 minutes (40 MB), as a microphone would hold none.
    # In a fresh process that holds what ``listen`` holds (one engine, its log and cues),
    # not this one's other engines.
    for name, with_opinion in (("", False), (", --second-opinion", True)):
        out = subprocess.run(
            [sys.executable, __file__, "--hour", str(with_opinion)],
            capture_output=True,
            text=True,
            check=True,
        )
        print(out.stdout.strip().replace("SESSION", f"session{name}"))

    # 5. One inference.
    window = np.zeros(classifier.spec.input_shape, dtype=np.float32)
    for _ in range(50):
        classifier.predict(window)
    t0 = time.perf_counter()
    for _ in range(2000):
        classifier.predict(window)
    print(f"one inference (int8, 1 thread): {(time.perf_counter() - t0) / 2:.3f} ms")

    # 6. The call's cues as a call grows.
    long_call_cues(classifier)


class RecordedActivity(SideActivity):
    """What an engine tells its side's activity, kept to be told again: stretches of
    samples with their VAD decisions, each followed by the pitches of the windows they
    completed (placed, as the engine places them, from the end of what was fed)."""

    def __init__(self, hangover_frames: int) -> None:
        super().__init__(hangover_frames)
        self.steps: list[tuple[list, list, list]] = []

    def feed(self, samples: np.ndarray, decisions: np.ndarray) -> None:
        if not self.steps or self.steps[-1][2]:
            self.steps.append(([], [], []))
        self.steps[-1][0].append(np.array(samples))
        self.steps[-1][1].append(np.array(decisions))

    def add_pitch(self, ago_s: float, semitones: np.ndarray) -> None:
        self.steps[-1][2].append((ago_s, np.array(semitones)))

    def told_again(self, into: SideActivity):
        """Tell ``into`` a step at a time, round and round; yields after each step."""
        steps = [(np.concatenate(x), np.concatenate(d), p) for x, d, p in self.steps]
        for samples, decisions, pitches in itertools.cycle(steps):
            into.feed(samples, decisions)
            for ago_s, semitones in pitches:
                into.add_pitch(ago_s, semitones)
            yield


def long_call_cues(classifier: Classifier, hours: int = 3) -> None:
    """The call's cues, both sides, every second of the last minute of each hour of a
    call: each side is 10 minutes of test speech as the engine hears it (its VAD
    decisions and the pitch of its windows), told again and again."""
    activities, telling = {}, {}
    for side, seed in (("you", 1), ("them", 2)):
        engine = Engine(classifier)
        engine.activity = recorded = RecordedActivity(engine.activity.hangover_frames)
        audio = speech_stream(600, seed=seed)
        for i in range(0, len(audio), BLOCK):
            engine.feed(audio[i : i + BLOCK])
        activities[side] = SideActivity(recorded.hangover_frames)
        telling[side] = recorded.told_again(activities[side])
    monitor = CallMonitor(activities, DEFAULT_RULES)

    def until(at_s: float) -> None:
        for side, activity in activities.items():
            while activity.end_s < at_s:
                next(telling[side])

    medians = []
    for hour in range(1, hours + 1):
        until(hour * 3600 - 61)
        monitor.poll(final=True)  # what came before the minute, taken in untimed
        polls = []
        for at_s in range(hour * 3600 - 60, hour * 3600):
            until(at_s)
            t0 = time.perf_counter()
            monitor.poll(final=True)
            polls.append((time.perf_counter() - t0) * 1000)
        medians.append(f"{np.median(polls):.2f} ms at {hour} h")
    print(f"the call's cues, both sides, every second (median of a minute): {', '.join(medians)}")


def alerts_on_a_recording(engine: Engine, audio: np.ndarray, one_core_rtf: float) -> None:
    """What ``analyze --alerts`` and the web page add: the default rules replayed on an
    hour-long two-sided recording (the 10 minutes analysed once, laid six times end to end
    as each side), against analysing its two sides on one core."""
    from types import SimpleNamespace

    from ser_live.analysis import analyze_samples
    from ser_live.conversation import replay_alerts

    part = analyze_samples(audio, "call", engine)
    length_s = part.activity.end_s
    speech = np.tile(part.activity.speech, 6)
    updates = [
        SimpleNamespace(
            end_s=u.end_s + k * length_s, speech=u.speech, probabilities=u.probabilities
        )
        for k in range(6)
        for u in part.updates
    ]
    side = (updates, replace(part.activity, speech=speech))
    t0 = time.perf_counter()
    replay_alerts({"1": side, "2": side}, FILE_RULES)
    replay_s = time.perf_counter() - t0
    hour_s = 6 * length_s
    print(
        f"alerts on a {hour_s / 60:.0f}-min two-sided recording (default rules): "
        f"{replay_s:.2f} s, {replay_s / (2 * hour_s / one_core_rtf):.1%} of analysing its two "
        "sides on one core"
    )


def hour(with_opinion: bool) -> None:
    """Memory over a simulated hour-long live session, with its log and the call's cues
    every second. The hour is 10 minutes of speech played six times, block by block: the
    process holds those 10 minutes (40 MB), as a microphone would hold none."""
    audio = speech_stream_apart(620)
    opinion = load_second_opinion() if with_opinion else None
    engine = Engine(load_model(), calibrate=True, second_opinion=opinion, background_phrases=True)
    samples, polls = [], []
    with tempfile.TemporaryDirectory() as tmp:
        session_log = SessionLog(Path(tmp) / "session.csv", engine.labels)
        log = session_log.side("you", "benchmark")
        monitor = CallMonitor(
            {"you": engine.activity}, DEFAULT_RULES, session_log, Path(tmp) / "cues.csv"
        )
        for i in range(0, 3600 * 16000, BLOCK):
            start = i % len(audio)
            for update in engine.feed(audio[start : start + BLOCK]):
                log.write_update(update)
                monitor.on_update("you", update)
            for verdict in engine.take_phrases():
                log.write_phrase(verdict)
            if i % 16000 == 0:  # the cues, every second of audio
                t0 = time.perf_counter()
                monitor.poll()
                polls.append((time.perf_counter() - t0) * 1000)
            if i % (600 * 16000) == 0:
                samples.append(rss_mb())
        samples.append(rss_mb())
        monitor.close()
        session_log.close()
    engine.close()
    print(
        "memory over a simulated 1 h SESSION (whole process, including 40 MB of test audio): "
        f"{samples[0]:.0f} MB at start, {samples[-1]:.0f} MB at the end, max "
        f"{max(samples):.0f} MB (every 10 min: {', '.join(f'{s:.0f}' for s in samples)}); "
        f"the cues every second: median {np.median(polls):.2f} ms, in the last minute "
        f"{np.median(polls[-60:]):.2f} ms"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--hour"]:
        hour(sys.argv[2] == "True")
    else:
        main()
