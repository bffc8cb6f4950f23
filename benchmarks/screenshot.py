"""Screenshot of the real window while it analyses a real recording (run under Xvfb)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ser_live.audio_io import load_audio  # noqa: E402

CLIPS = [  # RAVDESS fixtures (see tests/fixtures/README.md): angry, sad, surprised, angry
    "ravdess/Actor_01/03-01-05-02-01-01-01.flac",
    "ravdess/Actor_02/03-01-04-02-01-01-02.flac",
    "ravdess/Actor_03/03-01-08-02-01-01-03.flac",
    "ravdess/Actor_04/03-01-05-02-02-01-04.flac",
]


def main(out: str) -> None:
    import pyqtgraph as pg
    from PySide6 import QtCore, QtWidgets

    from ser_live.gui.main_window import MainWindow

    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    app = QtWidgets.QApplication(sys.argv[:1])
    tmp = Path(tempfile.mkdtemp())
    recording = tmp / "call.flac"
    audio = np.concatenate([load_audio(ROOT / "tests/fixtures/corpus" / c) for c in CLIPS])
    sf.write(recording, audio, 16000)
    settings = QtCore.QSettings(str(tmp / "settings.ini"), QtCore.QSettings.IniFormat)
    window = MainWindow(settings=settings, sessions_dir=tmp / "sessions")
    window.resize(1200, 720)
    window.show()
    while window.classifier is None:
        app.processEvents()
        time.sleep(0.02)
    window.open_recording(recording)
    marked = False
    start = time.monotonic()
    while time.monotonic() - start < len(audio) / 16000 - 1.2:
        app.processEvents()
        time.sleep(0.01)
        if not marked and time.monotonic() - start > 8.5:
            window.add_marker("customer escalated")
            marked = True
    window.grab().save(out)
    print(f"saved {out}")
    window.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot.png")
