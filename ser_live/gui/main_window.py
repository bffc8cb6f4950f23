"""The main window: device, start/pause/stop, markers, settings, export, and the views.

Threads: the window runs on the Qt UI thread and never runs capture or inference. The
model is loaded and warmed up on a plain background thread; a ``LiveSession`` runs the
source and the engine on its worker thread. Neither touches Qt: the UI polls them on a
33 ms timer (``_tick``) and paints from the latest results, and it changes the engine's
settings only through ``LiveSession.configure``, which the worker applies between blocks.
"""

from __future__ import annotations

import datetime as dt
import shutil
import threading
import time
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from ser_live import EMOTIONS, __version__
from ser_live.engine import Engine
from ser_live.errors import SerLiveError
from ser_live.gui.views import EmotionPanel, SpectrogramView, TimelineView
from ser_live.session import LiveSession
from ser_live.session_log import SessionLog
from ser_live.sources import FileSource, MicrophoneSource, input_devices
from ser_live.spectrogram import LogMelTap

PAINT_MS = 33


class MainWindow(QtWidgets.QMainWindow):
    def __init__(
        self,
        model_path: Path | None = None,
        settings: QtCore.QSettings | None = None,
        sessions_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.setWindowTitle(f"ser-live {__version__} — speech emotion monitor")
        self.settings = settings or QtCore.QSettings("ser-live", "ser-live")
        base = QtCore.QStandardPaths.writableLocation(QtCore.QStandardPaths.AppDataLocation)
        self.sessions_dir = Path(sessions_dir or Path(base) / "sessions")
        self.classifier = None
        self.model_error: str | None = None
        self.session: LiveSession | None = None
        self.log: SessionLog | None = None
        self.session_clock = 0.0  # seconds of session so far, across pauses and devices
        self.heard_speech = False
        self.state = "warming up"
        self.paints = 0
        self.tap = LogMelTap()
        self._build()
        self._restore_settings()
        self.refresh_devices()
        self._loader = threading.Thread(target=self._load_model, args=(model_path,), daemon=True)
        self._loader.start()
        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self._tick)
        self.timer.start(PAINT_MS)
        self._set_state("warming up", "Loading the model and warming up…")

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        bar = self.addToolBar("session")
        bar.setMovable(False)
        self.device_box = QtWidgets.QComboBox()
        self.device_box.setMinimumWidth(220)
        self.device_box.setToolTip("Input device")
        bar.addWidget(self.device_box)
        self.refresh_action = bar.addAction("⟳", self.refresh_devices)
        self.refresh_action.setToolTip("Refresh the device list")
        bar.addSeparator()
        self.start_action = bar.addAction("Start", self.start_listening)
        self.pause_action = bar.addAction("Pause", self.pause)
        self.stop_action = bar.addAction("Stop", self.stop)
        bar.addSeparator()
        self.open_action = bar.addAction("Open recording…", self._choose_recording)
        bar.addSeparator()
        self.export_action = bar.addAction("Export CSV…", self._choose_export)
        self.clear_action = bar.addAction("Clear", self.clear)

        self.panel = EmotionPanel()
        self.marker_text = QtWidgets.QLineEdit()
        self.marker_text.setPlaceholderText("note, e.g. customer escalated")
        self.marker_button = QtWidgets.QPushButton("Mark (Ctrl+M)")
        self.marker_button.clicked.connect(lambda: self.add_marker())
        self.marker_text.returnPressed.connect(lambda: self.add_marker())
        QtGui.QShortcut(QtGui.QKeySequence("Ctrl+M"), self, activated=lambda: self.add_marker())
        self.vad_box = QtWidgets.QSpinBox()
        self.vad_box.setRange(0, 3)
        self.vad_box.setToolTip("0 keeps the most audio as speech, 3 is the strictest")
        self.vad_box.valueChanged.connect(self._apply_vad)
        self.smoothing_box = QtWidgets.QSpinBox()
        self.smoothing_box.setRange(1, 10)
        self.smoothing_box.setSuffix(" windows")
        self.smoothing_box.valueChanged.connect(self._apply_smoothing)
        form = QtWidgets.QFormLayout()
        form.addRow("VAD aggressiveness", self.vad_box)
        form.addRow("Smoothing", self.smoothing_box)
        side = QtWidgets.QVBoxLayout()
        side.addWidget(self.panel, 1)
        marker_box = QtWidgets.QGroupBox("Marker")
        marker_layout = QtWidgets.QVBoxLayout(marker_box)
        marker_layout.addWidget(self.marker_text)
        marker_layout.addWidget(self.marker_button)
        side.addWidget(marker_box)
        settings_box = QtWidgets.QGroupBox("Settings")
        settings_box.setLayout(form)
        side.addWidget(settings_box)

        self.spectrogram = SpectrogramView()
        self.timeline = TimelineView()
        views = QtWidgets.QSplitter(QtCore.Qt.Vertical)
        views.addWidget(self.spectrogram)
        views.addWidget(self.timeline)
        views.setSizes([300, 400])
        central = QtWidgets.QWidget()
        layout = QtWidgets.QHBoxLayout(central)
        side_widget = QtWidgets.QWidget()
        side_widget.setLayout(side)
        side_widget.setMaximumWidth(340)
        layout.addWidget(side_widget)
        layout.addWidget(views, 1)
        self.setCentralWidget(central)
        self.status = self.statusBar()
        self.resize(1200, 720)

    # ------------------------------------------------------------------ settings
    def _restore_settings(self) -> None:
        self.vad_box.setValue(int(self.settings.value("vad", 2)))
        self.smoothing_box.setValue(int(self.settings.value("smoothing", 3)))
        self.marker_text.setText(str(self.settings.value("marker_text", "")))
        geometry = self.settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)

    def _save_settings(self) -> None:
        self.settings.setValue("vad", self.vad_box.value())
        self.settings.setValue("smoothing", self.smoothing_box.value())
        self.settings.setValue("marker_text", self.marker_text.text())
        self.settings.setValue("device", self.device_box.currentText())
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.sync()

    def _apply_vad(self, level: int) -> None:
        if self.session is not None:
            self.session.configure(lambda engine: engine.set_vad_aggressiveness(level))
        self.settings.setValue("vad", level)

    def _apply_smoothing(self, n: int) -> None:
        if self.session is not None:
            self.session.configure(lambda engine: engine.set_smoothing(n))
        self.settings.setValue("smoothing", n)

    # ------------------------------------------------------------------ model
    def _load_model(self, model_path: Path | None) -> None:
        """Background thread: load the model and pay the one-off warm-up costs."""
        from ser_live.model import load_model

        try:
            classifier = load_model(model_path)
            Engine(classifier).warm_up()
            self.classifier = classifier
        except SerLiveError as exc:
            self.model_error = str(exc)

    def _new_engine(self) -> Engine:
        return Engine(
            self.classifier,
            smoothing=self.smoothing_box.value(),
            vad_aggressiveness=self.vad_box.value(),
        )

    # ------------------------------------------------------------------ devices
    def refresh_devices(self) -> None:
        wanted = self.device_box.currentText() or str(self.settings.value("device", ""))
        self.device_box.clear()
        try:
            devices = input_devices()
        except SerLiveError:
            devices = []
        for dev in devices:
            self.device_box.addItem(dev["name"], dev["index"])
        index = self.device_box.findText(wanted)
        if index >= 0:
            self.device_box.setCurrentIndex(index)
        if not devices and self.state in ("ready", "device lost"):
            self._set_state(
                self.state, "No input device found. Connect one and press ⟳.", warning=True
            )
        self._update_actions()

    # ------------------------------------------------------------------ session control
    def _open_log(self, source_name: str) -> None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = self.sessions_dir / f"session-{stamp}.csv"
        n = 1
        while path.exists():
            n += 1
            path = self.sessions_dir / f"session-{stamp}-{n}.csv"
        self.log = SessionLog(path, list(EMOTIONS), source_name)

    def _close_log(self) -> None:
        if self.log is not None:
            self.log.close()

    def _run(self, source, offset: float) -> None:
        self.session = LiveSession(self._new_engine(), source, self.log, time_offset_s=offset)
        self.tap.reset()
        self.session.start()

    def start_listening(self) -> None:
        """Start, resume after a pause, or continue on another device after a loss."""
        if self.classifier is None:
            return
        if self.device_box.count() == 0:
            self._set_state("ready", "No input device found. Connect one and press ⟳.", True)
            return
        try:
            source = MicrophoneSource(self.device_box.currentData())
        except SerLiveError as exc:
            self._set_state(self.state, str(exc), warning=True)
            return
        resuming = self.state in ("paused", "device lost") and self.log is not None
        if not resuming:
            self._stop_session()
            self._close_log()
            self.clear_views()
            self.session_clock = 0.0
            self._open_log(source.name)
        elif self.log is not None:
            self.log.write_note(
                "event", f"resumed on {source.name}", self.session_clock, time.time()
            )
        self._run(source, self.session_clock)
        self._set_state("listening", f"Listening on {source.name}")

    def open_recording(self, path: str | Path, realtime: bool = True) -> bool:
        """Replay a recording through the same views (and a session log of its own)."""
        if self.classifier is None:
            return False
        try:
            source = FileSource(path, realtime=realtime, block_s=0.05)
        except SerLiveError as exc:
            self._set_state(self.state, str(exc), warning=True)
            return False
        self._stop_session()
        self._close_log()
        self.clear_views()
        self.session_clock = 0.0
        self._open_log(source.name)
        self._run(source, 0.0)
        self._set_state("replaying", f"Replaying {Path(path).name}")
        return True

    def pause(self) -> None:
        if self.state == "listening":
            self._stop_session()
            if self.log is not None:
                self.log.write_note("event", "paused", self.session_clock, time.time())
            self._set_state("paused", "Paused. Start resumes the same session.")

    def stop(self) -> None:
        if self.state in ("listening", "replaying", "paused", "device lost"):
            self._stop_session()
            self._close_log()
            self._set_state("ready", self._log_message("Stopped."))

    def _stop_session(self) -> None:
        if self.session is not None:
            self.session.stop()
            self._drain()
            self.session_clock = self.session.session_s
            self.session = None

    def add_marker(self, note: str | None = None) -> bool:
        note = (note if note is not None else self.marker_text.text()).strip() or "marker"
        if self.log is None or self.state not in (
            "listening",
            "replaying",
            "paused",
            "device lost",
        ):
            self.status.showMessage("Start a session to place markers.", 3000)
            return False
        at = self.session.add_marker(note) if self.session is not None else self.session_clock
        if self.session is None:
            self.log.write_note("marker", note, at, time.time())
        self.timeline.add_marker(at, note)
        self.status.showMessage(f"Marker at {at:.1f} s: {note}", 3000)
        return True

    def export_csv(self, target: str | Path) -> bool:
        if self.log is None:
            self.status.showMessage("Nothing to export yet.", 3000)
            return False
        try:
            shutil.copyfile(self.log.path, target)
        except OSError as exc:
            self._set_state(self.state, f"Export failed: {exc.strerror}", warning=True)
            return False
        self.status.showMessage(f"Exported to {target}", 5000)
        return True

    def clear(self) -> None:
        """Clear the views and start a fresh log; a running session carries on into it."""
        self.clear_views()
        if self.log is not None:
            old = self.log
            self._open_log(old.source)
            if self.session is not None:
                # The worker reads session.log once per row: a row racing this swap lands
                # in the old log or, once it is closed, nowhere. Acceptable for "clear".
                self.session.log = self.log
            old.close()
            self.status.showMessage(f"Cleared; new log {self.log.path}", 5000)

    def clear_views(self) -> None:
        """Empty views for a new session: nothing heard yet."""
        self.timeline.clear_data()
        self.spectrogram.clear_data()
        self.heard_speech = False
        self.panel.show_silence("no speech yet")

    # ------------------------------------------------------------------ UI timer
    def _drain(self) -> None:
        if self.session is None:
            return
        updates, blocks = self.session.pop_updates()
        if blocks:
            audio = np.concatenate(blocks)
            self.spectrogram.add_columns(self.tap.feed(audio))
            rms = float(np.sqrt(np.mean(audio[-1600:].astype(np.float64) ** 2)))
            self.panel.show_level(20 * np.log10(max(rms, 1e-6)))
        for update in updates:
            self.timeline.add(update.end_s, update.probabilities)
            if update.speech:
                self.heard_speech = True
                self.panel.show_emotion(update.emotion, update.confidence)
            else:
                self.panel.show_silence("—" if self.heard_speech else "no speech yet")

    def _tick(self) -> None:
        if self.state == "warming up":
            if self.model_error:
                self._set_state("model error", self.model_error, warning=True)
            elif self.classifier is not None:
                ready = (
                    "Ready."
                    if self.device_box.count()
                    else (
                        "Ready, but no input device found: connect one and press ⟳, "
                        "or open a recording."
                    )
                )
                self._set_state("ready", ready, warning=not self.device_box.count())
        self._drain()
        session = self.session
        if session is not None and not session.running:
            self._drain()
            self.session_clock = session.session_s
            self.session = None
            if session.error is not None and self.state == "replaying":
                self._close_log()
                self._set_state(
                    "finished", self._log_message(f"Replay stopped: {session.error}."), warning=True
                )
            elif session.error is not None:
                self._set_state(
                    "device lost",
                    self._log_message(
                        f"{session.error}. The session is kept: "
                        "pick a device and press Resume to go on."
                    ),
                    warning=True,
                )
            elif self.state == "replaying":
                self._close_log()
                self._set_state("finished", self._log_message("Recording finished."))
        self.spectrogram.paint()
        self.timeline.paint()
        self.paints += 1

    def _log_message(self, text: str) -> str:
        return f"{text} Log: {self.log.path}" if self.log is not None else text

    def _set_state(self, state: str, message: str, warning: bool = False) -> None:
        self.state = state
        self.panel.show_state(message, warning)
        self.status.showMessage(message)
        self._update_actions()

    def _update_actions(self) -> None:
        ready = self.classifier is not None
        active = self.state in ("listening", "replaying")
        self.start_action.setEnabled(ready and not active and self.device_box.count() > 0)
        self.start_action.setText("Resume" if self.state in ("paused", "device lost") else "Start")
        self.pause_action.setEnabled(self.state == "listening")
        self.stop_action.setEnabled(
            self.state in ("listening", "replaying", "paused", "device lost")
        )
        self.open_action.setEnabled(ready)
        self.export_action.setEnabled(self.log is not None)

    # ------------------------------------------------------------------ dialogs
    def _choose_recording(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open recording", "", "Audio (*.wav *.flac *.ogg *.mp3 *.opus);;All files (*)"
        )
        if path:
            self.open_recording(path)

    def _choose_export(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export session CSV", "session.csv", "CSV (*.csv)"
        )
        if path:
            self.export_csv(path)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.timer.stop()
        self._stop_session()
        self._close_log()
        self._save_settings()
        super().closeEvent(event)
