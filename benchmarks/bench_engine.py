"""Engine benchmark: speed, latency, start-up and memory. ``make bench`` prints the figures.

1. analyze's real-time factor over at least 10 minutes of speech (start-up excluded), with
   the model's voice shifts and without (`--no-voice-shifts`), and their ratio;
2. per-update processing time in live mode (20 ms blocks, as from a microphone), both ways;
3. time from process start to the first prediction, in a fresh process (warm numba cache);
4. resident memory over a simulated one-hour live session, session log included;
5. one inference of the int8 model on one core.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import rss_mb, speech_stream
from ser_live.analysis import analyze_file
from ser_live.engine import Engine
from ser_live.model import load_model
from ser_live.session_log import SessionLog

FIRST_PREDICTION = """
import time; t0 = time.perf_counter()
import numpy as np
from ser_live.engine import Engine
from ser_live.model import load_model
from ser_live.audio_io import load_audio
engine = Engine(load_model()); engine.warm_up()
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
    engine = Engine(classifier)
    engine.warm_up()
    print(
        f"model: {classifier.path.name}, {classifier.path.stat().st_size / 1024:.0f} KiB, "
        f"int8={classifier.quantized}"
    )

    # 1. Real-time factor of analyze, with the model's voice shifts and without.
    audio = speech_stream(620)
    duration = len(audio) / 16000
    plain_engine = Engine(classifier, voice_shifts=False)
    elapsed = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        sf.write(path, audio, 16000, subtype="PCM_16")
        for name, each in (("analyze", engine), ("analyze --no-voice-shifts", plain_engine)):
            t0 = time.perf_counter()
            result = analyze_file(path, each)
            elapsed[name] = time.perf_counter() - t0
            assert result.error is None, result.error
            print(
                f"{name}: {duration / 60:.1f} min of audio ({result.speech_s / 60:.1f} min "
                f"speech) in {elapsed[name]:.2f} s = {duration / elapsed[name]:.0f}x faster "
                f"than real time ({len(result.updates)} windows)"
            )
    copies = len(engine.shifter.semitones) if engine.shifter else 0
    print(
        f"the voice shifts ({copies} copies of each speech window) take "
        f"{elapsed['analyze'] / elapsed['analyze --no-voice-shifts']:.1f}x the time"
    )

    # 2. Per-update latency in live mode (20 ms blocks, as from a microphone).
    for name, each in (("live update", engine), ("live update, no voice shifts", plain_engine)):
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
    firsts = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", FIRST_PREDICTION.format(clip=clip)],
            capture_output=True,
            text=True,
            check=True,
        )
        firsts.append((float(out.stdout.strip()), time.perf_counter() - t0))
    inside = [f[0] for f in firsts]
    print(
        f"start to first prediction (fresh process, warm cache): {min(inside):.2f} s "
        f"(runs: {', '.join(f'{x:.2f}' for x in inside)} s; interpreter start adds "
        f"{np.median([w - i for i, w in firsts]):.2f} s)"
    )

    # 4. Memory over a simulated hour-long live session, with its log.
    # The hour is the 10 minutes above played six times, streamed block by block: the
    # process holds only those 10 minutes (40 MB), as a microphone would hold none.
    engine.reset()
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        log = SessionLog(Path(tmp) / "session.csv", engine.labels, "benchmark")
        for i in range(0, 3600 * 16000, BLOCK):
            start = i % len(audio)
            for update in engine.feed(audio[start : start + BLOCK]):
                log.write_update(update)
            if i % (600 * 16000) == 0:
                samples.append(rss_mb())
        samples.append(rss_mb())
        log.close()
    print(
        "memory over a simulated 1 h session (whole process, including 40 MB of test audio): "
        f" {samples[0]:.0f} MB at start, "
        f"{samples[-1]:.0f} MB at the end, max {max(samples):.0f} MB "
        f"(samples every 10 min: {', '.join(f'{s:.0f}' for s in samples)})"
    )

    # 5. One inference.
    window = np.zeros(classifier.spec.input_shape, dtype=np.float32)
    for _ in range(50):
        classifier.predict(window)
    t0 = time.perf_counter()
    for _ in range(2000):
        classifier.predict(window)
    print(f"one inference (int8, 1 thread): {(time.perf_counter() - t0) / 2:.3f} ms")


if __name__ == "__main__":
    main()
