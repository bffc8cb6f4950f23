"""GUI benchmark: the real window listens to a real device while speech plays into it.

Run under X (``make bench-gui`` uses Xvfb) with the PulseAudio null sink of
tests/audio_env.sh. Prints frames per second, the UI thread's CPU use, dropped audio blocks
and resident memory over the run. ``--minutes 60`` for the hour-long figure.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import rss_mb, speech_stream


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()

    import os

    # Record the sink we play into, whatever the machine's default source is.
    os.environ.setdefault("PULSE_SOURCE", "ser_live_sink.monitor")

    import pyqtgraph as pg
    from PySide6 import QtCore, QtWidgets

    from ser_live.gui.main_window import MainWindow

    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    app = QtWidgets.QApplication(sys.argv[:1])
    tmp = Path(tempfile.mkdtemp())
    settings = QtCore.QSettings(str(tmp / "settings.ini"), QtCore.QSettings.IniFormat)
    window = MainWindow(settings=settings, sessions_dir=tmp / "sessions")
    window.show()
    while window.classifier is None:
        app.processEvents()
        time.sleep(0.02)
    window.device_box.setCurrentIndex(window.device_box.findText("pulse"))

    speech = tmp / "speech.wav"
    sf.write(speech, speech_stream(300), 16000, subtype="PCM_16")
    stop = threading.Event()

    def play() -> None:  # speech into the sink, over and over
        while not stop.is_set():
            subprocess.run(["paplay", "--device", "ser_live_sink", str(speech)], check=False)

    window.start_listening()
    session = window.session
    player = threading.Thread(target=play, daemon=True)
    player.start()
    seconds = args.minutes * 60
    samples: list[tuple[float, float]] = []
    start_wall, start_cpu, start_paints = time.monotonic(), time.thread_time(), window.paints
    next_sample = start_wall
    while time.monotonic() - start_wall < seconds:
        app.processEvents(QtCore.QEventLoop.AllEvents, 20)
        time.sleep(0.005)
        if time.monotonic() >= next_sample:
            samples.append((time.monotonic() - start_wall, rss_mb()))
            next_sample += max(10.0, seconds / 12)
    wall = time.monotonic() - start_wall
    ui_cpu = time.thread_time() - start_cpu  # this (the UI) thread only: drawing and polling
    paints = window.paints - start_paints
    source = session.source
    updates = window.timeline.points
    state, error = window.state, session.error
    stop.set()
    window.close()
    subprocess.run(["pkill", "-f", f"paplay --device ser_live_sink {speech}"], check=False)
    print(
        f"listened {wall / 60:.1f} min on {source.name!r}: {paints / wall:.1f} fps, "
        f"UI thread {100 * ui_cpu / wall:.1f}% of one core, "
        f"{source.dropped_blocks} audio blocks dropped, {source.overflows} overflows, "
        f"{updates} updates; final state {state!r}" + (f" ({error})" if error else "")
    )
    print(
        "memory (MB) over the run: "
        + ", ".join(f"{t / 60:.0f} min {m:.0f}" for t, m in samples)
        + f", end {rss_mb():.0f}"
    )


if __name__ == "__main__":
    main()
