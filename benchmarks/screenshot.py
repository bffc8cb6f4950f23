"""Screenshots of the real windows (run under Xvfb with the PulseAudio null sink of
tests/audio_env.sh): both sides of a call as it happens, then the review of that session.

A second null sink stands for the other party; RAVDESS fixture clips are played into
each side's sink in turn, like a conversation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import null_sink  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "corpus" / "ravdess"
OTHER_SINK = "ser_live_screenshot_other"
TURNS = [  # (side's sink, clip), one voice per side: see tests/fixtures/README.md
    ("ser_live_sink", "Actor_02/03-01-01-01-01-01-02.flac"),  # neutral
    (OTHER_SINK, "Actor_04/03-01-05-02-02-01-04.flac"),  # angry
    ("ser_live_sink", "Actor_02/03-01-04-02-01-01-02.flac"),  # sad
    (OTHER_SINK, "Actor_04/03-01-07-02-01-01-04.flac"),  # disgust
]


def main(out_dir: str) -> None:
    os.environ.setdefault("PULSE_SOURCE", "ser_live_sink.monitor")
    with null_sink(OTHER_SINK, "call-output"):
        shoot(Path(out_dir))


def shoot(out: Path) -> None:
    import pyqtgraph as pg
    from PySide6 import QtCore, QtWidgets

    from ser_live.gui.main_window import OTHER, YOU, MainWindow

    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    app = QtWidgets.QApplication(sys.argv[:1])
    tmp = Path(tempfile.mkdtemp())
    settings = QtCore.QSettings(str(tmp / "settings.ini"), QtCore.QSettings.IniFormat)
    window = MainWindow(settings=settings, sessions_dir=tmp / "sessions")
    window.resize(1280, 860)
    window.show()
    while window.classifier is None:
        app.processEvents()
        time.sleep(0.02)
    window.refresh_devices()
    window.device_boxes[YOU].setCurrentIndex(window.device_boxes[YOU].findText("pulse"))
    other = window.device_boxes[OTHER]
    other.setCurrentIndex(other.findData(f"pulse:{OTHER_SINK}.monitor"))
    window.name_edits[YOU].setText("agent")
    window.name_edits[OTHER].setText("customer")
    window.start_listening()

    mid_last_turn = threading.Event()

    def converse() -> None:
        time.sleep(1.0)
        for i, (sink, clip) in enumerate(TURNS):
            player = subprocess.Popen(["paplay", "--device", sink, str(FIXTURES / clip)])
            if i == len(TURNS) - 1:
                time.sleep(2.6)
                mid_last_turn.set()
            player.wait()
            time.sleep(0.4)

    talk = threading.Thread(target=converse)
    talk.start()
    marked = False
    start = time.monotonic()
    while not mid_last_turn.is_set():
        app.processEvents()
        time.sleep(0.01)
        if not marked and time.monotonic() - start > 6.0:
            window.add_marker("customer escalated")
            marked = True
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)
    window.grab().save(str(out / "screenshot.png"))
    while talk.is_alive():
        app.processEvents()
        time.sleep(0.01)
    window.stop()
    review = window.open_review(window.log.path)
    review.resize(1280, 720)
    for _ in range(50):
        app.processEvents()
        time.sleep(0.01)
    review.grab().save(str(out / "review.png"))
    print(f"saved {out / 'screenshot.png'} and {out / 'review.png'}")
    review.close()
    window.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs")
