"""GUI benchmark: the real window listens to both sides of a call on real devices while
speech plays into each.

Run under X (``make bench-gui`` uses Xvfb) with the PulseAudio null sink of
tests/audio_env.sh; the other side records a second null sink's monitor, which this script
adds and removes. Prints frames per second, the UI thread's CPU use, the capture and
engine threads' CPU use, dropped audio blocks per side and resident memory over the run.
``--sides 1`` for one side (to compare), ``--minutes 60`` for the hour-long figure,
``--second-opinion`` with the second opinion on both sides.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import multiprocessing
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import rss_mb, speech_stream
from tests.conftest import null_sink

OTHER_SINK = "ser_live_bench_other"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument(
        "--sides",
        type=int,
        choices=(1, 2),
        default=2,
        help="2: both sides of a call, the other on a second sink's monitor (default)",
    )
    parser.add_argument(
        "--second-opinion",
        action="store_true",
        help="both sides with the phrase-level second opinion (models/dusha_ser.onnx)",
    )
    args = parser.parse_args()

    import os

    # Record the sink we play into, whatever the machine's default source is.
    os.environ.setdefault("PULSE_SOURCE", "ser_live_sink.monitor")

    sinks = contextlib.ExitStack()  # the other side's sink, removed however the run ends
    if args.sides == 2:
        sinks.enter_context(null_sink(OTHER_SINK))
    with sinks:
        run(args)


def write_speech(path: Path, seed: int) -> None:
    """Five minutes of speech for one side, played over and over."""
    sf.write(path, speech_stream(300, seed=seed), 16000, subtype="PCM_16")


def run(args: argparse.Namespace) -> None:
    import pyqtgraph as pg
    from PySide6 import QtCore, QtWidgets

    from ser_live.gui.main_window import OTHER, YOU, MainWindow

    tmp = Path(tempfile.mkdtemp())
    speeches = [tmp / f"speech{i}.wav" for i in range(args.sides)]
    # Written by a child process: the clips and their temporaries stay out of this
    # process's heap, which glibc does not always give back (the memory figure read up to
    # 50 MB more, by timing alone, when this process wrote them).
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        list(pool.map(write_speech, speeches, range(len(speeches))))
    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    app = QtWidgets.QApplication(sys.argv[:1])
    settings = QtCore.QSettings(str(tmp / "settings.ini"), QtCore.QSettings.IniFormat)
    window = MainWindow(
        settings=settings,
        sessions_dir=tmp / "sessions",
        use_second_opinion=args.second_opinion,
    )
    window.show()
    while window.classifier is None:
        app.processEvents()
        time.sleep(0.02)
    window.refresh_devices()
    window.device_boxes[YOU].setCurrentIndex(window.device_boxes[YOU].findText("pulse"))
    sinks = ["ser_live_sink"]
    if args.sides == 2:
        other = window.device_boxes[OTHER]
        other.setCurrentIndex(other.findData(f"pulse:{OTHER_SINK}.monitor"))
        sinks.append(OTHER_SINK)

    stop = threading.Event()
    players = []
    for sink, speech in zip(sinks, speeches, strict=True):

        def play(sink: str = sink, speech: Path = speech) -> None:  # over and over
            while not stop.is_set():
                subprocess.run(["paplay", "--device", sink, str(speech)], check=False)

        players.append(threading.Thread(target=play, daemon=True))

    window.start_listening()
    sessions = dict(window.sessions)
    for player in players:
        player.start()
    seconds = args.minutes * 60
    samples: list[tuple[float, float]] = []
    start_wall, start_paints = time.monotonic(), window.paints
    start_cpu, start_process = time.thread_time(), time.process_time()
    next_sample = start_wall
    while time.monotonic() - start_wall < seconds:
        app.processEvents(QtCore.QEventLoop.AllEvents, 20)
        time.sleep(0.005)
        if time.monotonic() >= next_sample:
            samples.append((time.monotonic() - start_wall, rss_mb()))
            next_sample += max(10.0, seconds / 12)
    wall = time.monotonic() - start_wall
    ui_cpu = time.thread_time() - start_cpu  # this (the UI) thread only: drawing and polling
    process_cpu = time.process_time() - start_process
    paints = window.paints - start_paints
    updates = {side: window.timelines[side].points for side in sessions}
    state = window.state
    errors = {side: s.error for side, s in sessions.items() if s.error}
    stop.set()
    window.close()
    for sink in sinks:
        subprocess.run(["pkill", "-f", f"paplay --device {sink} "], check=False)
    print(
        f"listened {wall / 60:.1f} min to {len(sessions)} side(s): {paints / wall:.1f} fps, "
        f"UI thread {100 * ui_cpu / wall:.1f}% of one core, "
        f"capture and engines {100 * (process_cpu - ui_cpu) / wall:.1f}% of one core; "
        f"final state {state!r}"
        + (f" ({errors})" if errors else "")
        + ("; the second opinion on" if window.second_opinion is not None else "")
    )
    for side, session in sessions.items():
        source = session.source
        print(
            f"  {side} on {source.name!r}: {updates[side]} updates, "
            f"{source.dropped_blocks} audio blocks dropped, "
            f"{getattr(source, 'overflows', 0)} overflows"
        )
    print(
        "memory (MB) over the run: "
        + ", ".join(f"{t / 60:.0f} min {m:.0f}" for t, m in samples)
        + f", end {rss_mb():.0f}"
    )


if __name__ == "__main__":
    main()
