"""The main window: the inputs of both sides of a call, start/pause/stop, markers,
settings, export, the live views, and review windows for past sessions.

Threads: the window runs on the Qt UI thread and never runs capture or inference. The
model is loaded and warmed up on a plain background thread; each side of a call is a
``LiveSession`` that runs its source and its own engine on its own worker thread. None of
them touches Qt: the UI polls them on a 33 ms timer (``_tick``) and paints from the latest
results, and it changes an engine's settings only through ``LiveSession.configure``,
which that side's worker applies between blocks. Markers and alerts are written to the
shared ``SessionLog`` from the UI thread; its lock orders them among the workers' rows.
Each side's ``SideActivity`` is fed by its worker and read by the UI thread's
``CallMonitor`` (the cues and alerts), under its own lock.
"""

from __future__ import annotations

import datetime as dt
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from ser_live import EMOTIONS, __version__
from ser_live.alerts import DEFAULT_RULES, Alert, load_rules
from ser_live.conversation import CallMonitor, cues_path
from ser_live.cues import SideActivity
from ser_live.engine import Engine
from ser_live.errors import SerLiveError
from ser_live.gui.views import AlertBanner, EmotionPanel, SpectrogramView, TimelineView
from ser_live.model import calibrates_live
from ser_live.session import LiveSession
from ser_live.session_log import SessionLog
from ser_live.sources import FileSource, all_inputs, open_source
from ser_live.spectrogram import LogMelTap

PAINT_MS = 33
#: The calibrate box's setting: stored only where the user's choice differs from what
#: the model's sidecar says (``_save_settings``), so that a new model's default reaches
#: whoever never chose. Not "calibrate" (before 2026-12-07) nor "calibrate_to_each_voice"
#: (2026-12-07), which the app wrote at every close: they hold the defaults of those
#: releases, not anyone's choice.
CALIBRATE_SETTING = "calibrate_by_choice"
#: The level meters move every third paint (10 per second): a progress bar repaints on
#: every change, about a millisecond each, which at 30 per second per side was a tenth
#: of the UI thread.
LEVEL_EVERY = 3
#: The spectrogram scrolls at 15 frames a second: scaling its image into the view was half
#: the UI thread's drawing, and it reads the same at half the rate.
SPECTROGRAM_EVERY = 2
#: The two sides of a call; their names in the log are the user's (settings).
YOU, OTHER = "you", "other"
SIDES = (YOU, OTHER)
NOBODY = "(nobody)"


class MainWindow(QtWidgets.QMainWindow):
    def __init__(
        self,
        model_path: Path | None = None,
        settings: QtCore.QSettings | None = None,
        sessions_dir: Path | None = None,
        second_opinion: Path | None = None,
        use_second_opinion: bool = False,
    ) -> None:
        super().__init__()
        self.setWindowTitle(f"ser-live {__version__} — speech emotion monitor")
        self.settings = settings or QtCore.QSettings("ser-live", "ser-live")
        base = QtCore.QStandardPaths.writableLocation(QtCore.QStandardPaths.AppDataLocation)
        self.sessions_dir = Path(sessions_dir or Path(base) / "sessions")
        self.classifier = None
        self.model_error: str | None = None
        # The phrase-level second opinion, shared by both sides' engines (ONNX Runtime's
        # run is thread-safe); None when asked for none or when it cannot run here.
        self.second_opinion = None
        self.second_opinion_note: str | None = None
        self.sessions: dict[str, LiveSession] = {}  # the sides running now
        self.speakers: dict[str, str] = {}  # side -> its name in the running log
        self.log: SessionLog | None = None
        self.activities: dict[str, SideActivity] = {}  # side -> its voice activity, per log
        self.monitor: CallMonitor | None = None  # the cues and alerts of the running log
        self._cues_shown_at: float | None = None  # the session time of the cues on show
        self.session_clock = 0.0  # seconds of session so far, across pauses and devices
        self.heard_speech: dict[str, bool] = dict.fromkeys(SIDES, False)
        self.review_windows: list = []
        self.state = "warming up"
        self.paints = 0
        self.tap = LogMelTap()
        self._calibrates_by_default = calibrates_live(model_path)
        self._build()
        self._restore_settings()
        self.refresh_devices()
        self._loader = threading.Thread(
            target=self._load_model,
            args=(model_path, second_opinion if use_second_opinion else False),
            daemon=True,
        )
        self._loader.start()
        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self._tick)
        self.timer.start(PAINT_MS)
        self._set_state("warming up", "Loading the model and warming up…")

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        bar = self.addToolBar("session")
        bar.setMovable(False)
        self.device_boxes: dict[str, QtWidgets.QComboBox] = {}
        for side, label, tip in (
            (YOU, "You:", "Your input: a microphone or headset"),
            (OTHER, " Other side:", "The other party: an output's monitor hears the call"),
        ):
            box = QtWidgets.QComboBox()
            box.setMinimumWidth(200)
            box.setToolTip(tip)
            box.currentIndexChanged.connect(self._update_actions)
            bar.addWidget(QtWidgets.QLabel(label))
            bar.addWidget(box)
            self.device_boxes[side] = box
        self.refresh_action = bar.addAction("⟳", self.refresh_devices)
        self.refresh_action.setToolTip("Refresh the device lists")
        bar.addSeparator()
        self.start_action = bar.addAction("Start", self.start_listening)
        self.pause_action = bar.addAction("Pause", self.pause)
        self.stop_action = bar.addAction("Stop", self.stop)
        bar.addSeparator()
        self.open_action = bar.addAction("Open recording…", self._choose_recording)
        self.review_action = bar.addAction("Review session…", self._choose_review)
        self.review_action.setToolTip("Open a past session log or analyze timeline")
        bar.addSeparator()
        self.export_action = bar.addAction("Export CSV…", self._choose_export)
        self.clear_action = bar.addAction("Clear", self.clear)

        self.panels = {YOU: EmotionPanel(font_size=26), OTHER: EmotionPanel(font_size=26)}
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
        self.calibrate_box = QtWidgets.QCheckBox("Calibrate to each voice")
        self.calibrate_box.setToolTip(
            "Hear each side relative to its own voice as it speaks (one voice per side). "
            "Applies from the next Start."
        )
        self.calibrate_box.toggled.connect(
            lambda on: self.settings.setValue(CALIBRATE_SETTING, bool(on))
        )
        self.lines_box = QtWidgets.QCheckBox("Probability lines under the band")
        self.lines_box.toggled.connect(self._apply_lines)
        self.sound_box = QtWidgets.QCheckBox("Sound on alert")
        self.sound_box.toggled.connect(lambda on: self.settings.setValue("alert_sound", bool(on)))
        self.rules_button = QtWidgets.QPushButton("Alert rules…")
        self.rules_button.setToolTip(
            "A TOML file of alert rules (docs/cues.md); cancel to go back to the defaults"
        )
        self.rules_button.clicked.connect(self._choose_rules)
        self.rules_label = QtWidgets.QLabel()
        self.rules_label.setWordWrap(True)
        self.rules_label.setStyleSheet("font-size: 8pt; color: #555;")
        self.rules_path: str = ""
        self.name_edits = {side: QtWidgets.QLineEdit() for side in SIDES}
        for side, edit in self.name_edits.items():
            edit.setPlaceholderText(side)
            edit.setToolTip("This side's name in the session log and the report")
            edit.textChanged.connect(self._show_names)
        form = QtWidgets.QFormLayout()
        form.addRow("Your name", self.name_edits[YOU])
        form.addRow("Other side's name", self.name_edits[OTHER])
        form.addRow("VAD aggressiveness", self.vad_box)
        form.addRow("Smoothing", self.smoothing_box)
        form.addRow("", self.calibrate_box)
        form.addRow("", self.lines_box)
        form.addRow(self.rules_button, self.sound_box)
        form.addRow(self.rules_label)
        side = QtWidgets.QVBoxLayout()
        side.addWidget(self.panels[YOU], 1)
        side.addWidget(self.panels[OTHER], 1)
        marker_box = QtWidgets.QGroupBox("Marker")
        marker_layout = QtWidgets.QVBoxLayout(marker_box)
        marker_layout.addWidget(self.marker_text)
        marker_layout.addWidget(self.marker_button)
        side.addWidget(marker_box)
        settings_box = QtWidgets.QGroupBox("Settings")
        settings_box.setLayout(form)
        side.addWidget(settings_box)

        self.spectrogram = SpectrogramView()
        self.timelines = {side: TimelineView() for side in SIDES}
        views = QtWidgets.QSplitter(QtCore.Qt.Vertical)
        views.addWidget(self.spectrogram)
        for timeline in self.timelines.values():
            views.addWidget(timeline)
        views.setSizes([220, 300, 300])
        central = QtWidgets.QWidget()
        outer = QtWidgets.QVBoxLayout(central)
        self.banner = AlertBanner()
        outer.addWidget(self.banner)
        layout = QtWidgets.QHBoxLayout()
        outer.addLayout(layout, 1)
        side_widget = QtWidgets.QWidget()
        side_widget.setLayout(side)
        side_widget.setMaximumWidth(340)
        layout.addWidget(side_widget)
        layout.addWidget(views, 1)
        self.setCentralWidget(central)
        self.status = self.statusBar()
        self.resize(1200, 820)

    # The first side's views and session, by their one-side names.
    @property
    def panel(self) -> EmotionPanel:
        return self.panels[YOU]

    @property
    def timeline(self) -> TimelineView:
        return self.timelines[YOU]

    @property
    def device_box(self) -> QtWidgets.QComboBox:
        return self.device_boxes[YOU]

    @property
    def session(self) -> LiveSession | None:
        return self.sessions.get(YOU)

    def side_name(self, side: str) -> str:
        return self.name_edits[side].text().strip() or side

    def _show_names(self) -> None:
        for side in SIDES:
            name = self.speakers.get(side) or self.side_name(side)
            self.panels[side].set_title(name)
            self.timelines[side].setTitle(name)
        self._show_other_side()

    def _show_other_side(self) -> None:
        """The other side's panel and timeline only when there is another side."""
        wanted = self.device_boxes[OTHER].currentData() is not None or OTHER in self.sessions
        self.panels[OTHER].setVisible(wanted)
        self.timelines[OTHER].setVisible(wanted)

    # ------------------------------------------------------------------ settings
    def _restore_settings(self) -> None:
        self.vad_box.setValue(int(self.settings.value("vad", 2)))
        self.smoothing_box.setValue(int(self.settings.value("smoothing", 3)))
        self.calibrate_box.setChecked(
            self.settings.value(CALIBRATE_SETTING, self._calibrates_by_default, type=bool)
        )
        self.lines_box.setChecked(self.settings.value("lines", True, type=bool))
        self.sound_box.setChecked(self.settings.value("alert_sound", False, type=bool))
        self._use_rules(str(self.settings.value("alert_rules", "")))
        self.marker_text.setText(str(self.settings.value("marker_text", "")))
        for side in SIDES:
            self.name_edits[side].setText(str(self.settings.value(f"name_{side}", "")))
        geometry = self.settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        self._show_names()

    def _save_settings(self) -> None:
        self.settings.setValue("vad", self.vad_box.value())
        self.settings.setValue("smoothing", self.smoothing_box.value())
        if self.calibrate_box.isChecked() == self._calibrates_by_default:
            self.settings.remove(CALIBRATE_SETTING)
        else:
            self.settings.setValue(CALIBRATE_SETTING, self.calibrate_box.isChecked())
        self.settings.setValue("marker_text", self.marker_text.text())
        self.settings.setValue("device", self.device_boxes[YOU].currentText())
        self.settings.setValue("other_device", self.device_boxes[OTHER].currentText())
        for side in SIDES:
            self.settings.setValue(f"name_{side}", self.name_edits[side].text())
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.sync()

    def _apply_lines(self, shown: bool) -> None:
        for timeline in self.timelines.values():
            timeline.show_lines(shown)
        self.settings.setValue("lines", bool(shown))

    def _use_rules(self, path: str) -> bool:
        """Alert rules from ``path`` ("" for the defaults), from the next Start or Clear.
        A bad file is said in the status bar and changes nothing."""
        if path:
            try:
                load_rules(path, [self.side_name(s) for s in SIDES])
            except SerLiveError as exc:
                self.status.showMessage(str(exc), 10000)
                return False
        self.rules_path = path
        self.settings.setValue("alert_rules", path)
        rules = self._rules()
        where = Path(path).name if path else "defaults"
        self.rules_label.setText(f"Alerts ({where}): " + "; ".join(r.name for r in rules))
        return True

    def _rules(self, names: list[str] | None = None) -> list:
        """The alert rules for sides ``names``: the default rules' "other side" is the
        last of them (the one side of a replay)."""
        names = names or [self.side_name(s) for s in SIDES]
        if self.rules_path:
            try:
                return load_rules(self.rules_path, names)
            except SerLiveError as exc:  # changed on disk since it was chosen
                self.status.showMessage(f"{exc}; using the default alerts", 10000)
        return [r if r.side is None else replace(r, side=names[-1]) for r in DEFAULT_RULES]

    def _choose_rules(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Alert rules", "", "Alert rules (*.toml);;All files (*)"
        )
        self._use_rules(path)

    def _apply_vad(self, level: int) -> None:
        for session in self.sessions.values():
            session.configure(lambda engine: engine.set_vad_aggressiveness(level))
        self.settings.setValue("vad", level)

    def _apply_smoothing(self, n: int) -> None:
        for session in self.sessions.values():
            session.configure(lambda engine: engine.set_smoothing(n))
        self.settings.setValue("smoothing", n)

    # ------------------------------------------------------------------ model
    def _load_model(self, model_path: Path | None, second_opinion: Path | bool | None) -> None:
        """Background thread: load the model (and the second opinion, unless ``False``)
        and pay the one-off warm-up costs."""
        from ser_live.model import load_model
        from ser_live.second_opinion import load_second_opinion

        if second_opinion is not False:
            try:
                opinion = load_second_opinion(second_opinion)
                opinion.warm_up()
                self.second_opinion = opinion
            except SerLiveError as exc:  # said once, in the status bar; the app runs on
                self.second_opinion_note = f"{exc}; running without the second opinion."
        try:
            classifier = load_model(model_path)
            Engine(classifier).warm_up()
            self.classifier = classifier
        except SerLiveError as exc:
            self.model_error = str(exc)

    def _new_engine(self) -> Engine:
        """An engine for one side's worker, with an interpreter of its own: a Classifier
        is not thread-safe, and two sides run at once."""
        return Engine(
            self.classifier.clone(),
            smoothing=self.smoothing_box.value(),
            vad_aggressiveness=self.vad_box.value(),
            calibrate=self.calibrate_box.isChecked(),
            second_opinion=self.second_opinion,
            background_phrases=True,
        )

    # ------------------------------------------------------------------ devices
    def refresh_devices(self) -> None:
        inputs = all_inputs()
        for side, box in self.device_boxes.items():
            key = "device" if side == YOU else "other_device"
            wanted = box.currentText() or str(self.settings.value(key, ""))
            box.blockSignals(True)
            box.clear()
            if side == OTHER:
                box.addItem(NOBODY, None)
            for label, spec in inputs:
                box.addItem(label, spec)
            index = box.findText(wanted)
            if index >= 0:
                box.setCurrentIndex(index)
            box.blockSignals(False)
        if not inputs and self.state in ("ready", "device lost"):
            self._set_state(
                self.state, "No input device found. Connect one and press ⟳.", warning=True
            )
        self._show_other_side()
        self._update_actions()

    # ------------------------------------------------------------------ session control
    def _open_log(self) -> None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = self.sessions_dir / f"session-{stamp}.csv"
        n = 1
        while path.exists():
            n += 1
            path = self.sessions_dir / f"session-{stamp}-{n}.csv"
        self.log = SessionLog(path, list(EMOTIONS))
        self.activities = {}

    def _watch(self) -> None:
        """The cues and alerts of the log's running sides (once per log)."""
        if self.monitor is None and self.log is not None and self.sessions:
            names = [self.speakers[side] for side in SIDES if side in self.sessions]
            self.monitor = CallMonitor(
                {self.speakers[side]: self.activities[side] for side in self.sessions},
                self._rules(names),
                self.log,
                cues_path(self.log.path),
            )

    def _close_log(self) -> None:
        if self.monitor is not None:
            self._show_alerts(self.monitor.poll(final=True))
            self.monitor.close()
            self.monitor = None
        if self.log is not None:
            self.log.close()

    def _clock(self) -> float:
        """The session clock: the furthest any running side has got."""
        return max([self.session_clock, *(s.session_s for s in self.sessions.values())])

    def _run(self, side: str, source, speaker: str, offset: float) -> None:
        side_log = self.log.side(speaker, source.name) if self.log else None
        engine = self._new_engine()
        if side not in self.activities:  # a side of this log carries on where it was
            hangover = engine.activity.hangover_frames
            self.activities[side] = SideActivity(hangover, offset)
        self.activities[side].continue_at(offset)
        engine.activity = self.activities[side]
        if self.monitor is not None:
            self.monitor.activities[speaker] = self.activities[side]
        session = LiveSession(engine, source, side_log, time_offset_s=offset)
        self.sessions[side] = session
        self.speakers[side] = speaker
        if side == YOU:
            self.tap.reset()
        self.panels[side].show_state(f"{speaker}: {source.name}")
        session.start()

    def _chosen_inputs(self) -> dict[str, int | str]:
        chosen = {YOU: self.device_boxes[YOU].currentData()}
        if self.device_boxes[OTHER].currentData() is not None:
            chosen[OTHER] = self.device_boxes[OTHER].currentData()
        return chosen

    def start_listening(self) -> None:
        """Start; resume after a pause or a lost device; or bring back a side that was
        lost while the other one carried on."""
        if self.classifier is None:
            return
        if self.device_boxes[YOU].count() == 0:
            self._set_state("ready", "No input device found. Connect one and press ⟳.", True)
            return
        chosen = self._chosen_inputs()
        if len(set(map(str, chosen.values()))) < len(chosen):
            self.status.showMessage("The two sides need different inputs.", 5000)
            return
        missing = [side for side in chosen if side not in self.sessions]
        if not missing:
            return
        sources = {}
        for side in missing:
            try:
                sources[side] = open_source(chosen[side])
            except SerLiveError as exc:
                self.panels[side].show_state(str(exc), warning=True)
        if not sources:
            self._set_state(self.state, "Could not open the chosen input.", warning=True)
            return
        resuming = self.log is not None and self.state in ("paused", "device lost", "listening")
        if not resuming:
            self._stop_sessions()
            self._close_log()
            self.clear_views()
            self.session_clock = 0.0
            self._open_log()
        offset = self._clock()
        for side, source in sources.items():
            speaker = self.side_name(side)
            if resuming and self.log is not None:
                self.log.side(speaker, source.name).write_note(
                    "event", f"resumed on {source.name}", offset, time.time()
                )
            self._run(side, source, speaker, offset)
        names = ", ".join(f"{self.speakers[s]} on {x.name}" for s, x in sources.items())
        self._watch()
        self._set_state("listening", f"Listening: {names}")
        self._show_names()

    def open_recording(self, path: str | Path, realtime: bool = True) -> bool:
        """Replay a recording through the first side's views (and a session log of its own)."""
        if self.classifier is None:
            return False
        try:
            source = FileSource(path, realtime=realtime, block_s=0.05)
        except SerLiveError as exc:
            self._set_state(self.state, str(exc), warning=True)
            return False
        self._stop_sessions()
        self._close_log()
        self.clear_views()
        self.session_clock = 0.0
        self._open_log()
        self._run(YOU, source, Path(path).name, 0.0)
        self._watch()
        self._set_state("replaying", f"Replaying {Path(path).name}")
        self._show_names()
        return True

    def open_review(self, path: str | Path):
        """A review window for a past session log or ``analyze --timeline`` table."""
        from ser_live.gui.review_window import ReviewWindow

        try:
            window = ReviewWindow.open(path)
        except SerLiveError as exc:
            self.status.showMessage(str(exc), 8000)
            return None
        self.review_windows = [w for w in self.review_windows if w.isVisible()] + [window]
        window.show()
        return window

    def pause(self) -> None:
        if self.state == "listening":
            self._stop_sessions()
            if self.log is not None:
                self.log.write_note("event", "paused", self.session_clock, time.time())
            self._set_state("paused", "Paused. Start resumes the same session.")

    def stop(self) -> None:
        if self.state in ("listening", "replaying", "paused", "device lost"):
            self._stop_sessions()
            self._close_log()
            self._set_state("ready", self._log_message("Stopped."))

    def _stop_sessions(self) -> None:
        for session in self.sessions.values():
            session.source.stop()  # all sides at once, then wait for each
        for side in list(self.sessions):
            self._end_side(side)

    def _end_side(self, side: str) -> LiveSession:
        session = self.sessions[side]
        session.stop()
        self._drain()
        self.session_clock = max(self.session_clock, session.session_s)
        del self.sessions[side]
        return session

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
        at = self._clock()
        self.log.write_note("marker", note, at, time.time())
        for timeline in self.timelines.values():
            timeline.add_marker(at, note)
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
        """Clear the views and start a fresh log; running sides carry on into it, each
        calibrating afresh (a new log is usually a new call, with a new voice)."""
        self.clear_views()
        for session in self.sessions.values():
            session.configure(lambda engine: engine.reset_calibration())
        if self.log is not None:
            old = self.log
            self._open_log()
            for side, session in self.sessions.items():
                # A worker reads session.log once per row: a row racing this swap lands in
                # the old log or, once it is closed, nowhere. Acceptable for "clear".
                session.log = self.log.side(self.speakers[side], session.source.name)
            old.close()
            if self.monitor is not None:
                self.monitor.close()
                self.monitor = None
            at = self._clock()
            for side, session in self.sessions.items():
                hangover = session.engine.activity.hangover_frames
                self.activities[side] = SideActivity(hangover, at)
                session.configure(lambda engine, a=self.activities[side]: _hand(engine, a))
            self._watch()
            self.status.showMessage(f"Cleared; new log {self.log.path}", 5000)

    def clear_views(self) -> None:
        """Empty views for a new session: nothing heard yet."""
        for timeline in self.timelines.values():
            timeline.clear_data()
        self.spectrogram.clear_data()
        self.heard_speech = dict.fromkeys(SIDES, False)
        for panel in self.panels.values():
            panel.show_silence("no speech yet")

    # ------------------------------------------------------------------ UI timer
    def _drain(self) -> None:
        for side, session in self.sessions.items():
            panel, timeline = self.panels[side], self.timelines[side]
            updates, blocks = session.pop_updates()
            if blocks:
                audio = np.concatenate(blocks)
                if side == YOU:
                    self.spectrogram.add_columns(self.tap.feed(audio))
                if self.paints % LEVEL_EVERY == 0:
                    rms = float(np.sqrt(np.mean(audio[-1600:].astype(np.float64) ** 2)))
                    panel.show_level(20 * np.log10(max(rms, 1e-6)))
            for update in updates:
                if self.monitor is not None:
                    self._show_alerts(self.monitor.on_update(self.speakers[side], update))
                timeline.add(update.end_s, update.probabilities)
                if update.speech:
                    self.heard_speech[side] = True
                    panel.show_emotion(update.emotion, update.confidence)
                    panel.show_probabilities(update.probabilities)
                else:
                    panel.show_silence("—" if self.heard_speech[side] else "no speech yet")
            for verdict in session.pop_phrases():
                panel.show_phrase(verdict.emotion, verdict.confidence)
        if self.monitor is not None and self.sessions:
            self._show_alerts(self.monitor.poll())
            latest = self.monitor.latest
            if latest is not None and latest.at_s != self._cues_shown_at:
                self._cues_shown_at = latest.at_s
                for side, name in self.speakers.items():
                    if name in latest.rolling:
                        self.panels[side].show_cues(latest.rolling[name], latest.session[name])
        now = self._clock()
        for timeline in self.timelines.values():
            timeline.follow(now)

    def _show_alerts(self, alerts: list[Alert]) -> None:
        """Alerts that fired (already in the log): the banner, a mark on the timelines."""
        for alert in alerts:
            who = f"{alert.side}: " if alert.side else ""
            self.banner.add(f"{alert.at_s:.1f} s  {who}{alert.rule.name} ({alert.rule.describe()})")
            sides = [s for s, n in self.speakers.items() if n == alert.side] or list(SIDES)
            for side in sides:
                self.timelines[side].add_marker(alert.at_s, alert.note)
            if self.sound_box.isChecked():
                QtWidgets.QApplication.beep()

    def _tick(self) -> None:
        if self.state == "warming up":
            if self.model_error:
                self._set_state("model error", self.model_error, warning=True)
            elif self.classifier is not None:
                ready = (
                    "Ready."
                    if self.device_boxes[YOU].count()
                    else (
                        "Ready, but no input device found: connect one and press ⟳, "
                        "or open a recording."
                    )
                )
                if self.second_opinion_note:
                    ready = f"{ready} {self.second_opinion_note}"
                self._set_state("ready", ready, warning=not self.device_boxes[YOU].count())
        self._drain()
        ended = [side for side, session in self.sessions.items() if not session.running]
        for side in ended:
            self._side_ended(side, self._end_side(side))
        if self.paints % SPECTROGRAM_EVERY == 0:
            self.spectrogram.paint()
        for timeline in self.timelines.values():
            timeline.paint()
        self.paints += 1

    def _side_ended(self, side: str, session: LiveSession) -> None:
        """A side's worker ended by itself: a recording finished, or a device was lost."""
        error = session.error
        if self.state == "replaying":
            self._close_log()
            if error is not None:
                self._set_state(
                    "finished", self._log_message(f"Replay stopped: {error}."), warning=True
                )
            else:
                self._set_state("finished", self._log_message("Recording finished."))
            return
        if error is None:
            return
        name = self.speakers.get(side, side)
        if self.sessions:  # the other side carries on
            self.panels[side].show_state(f"{error}", warning=True)
            others = ", ".join(self.speakers[s] for s in self.sessions)
            self._set_state(
                "listening",
                f"{name}: {error}. {others} carries on; pick an input for {name} and press "
                "Start to bring it back.",
                warning=True,
            )
            return
        self._set_state(
            "device lost",
            self._log_message(
                f"{error}. The session is kept: pick a device and press Resume to go on."
            ),
            warning=True,
        )

    def _log_message(self, text: str) -> str:
        return f"{text} Log: {self.log.path}" if self.log is not None else text

    def _set_state(self, state: str, message: str, warning: bool = False) -> None:
        self.state = state
        self.panels[YOU].show_state(message, warning)
        self.status.showMessage(message)
        self._update_actions()

    def _update_actions(self) -> None:
        ready = self.classifier is not None
        active = self.state in ("listening", "replaying")
        missing = [s for s in self._chosen_inputs() if s not in self.sessions]
        can_start = ready and self.device_boxes[YOU].count() > 0
        self.start_action.setEnabled(
            can_start and (not active or (self.state == "listening" and bool(missing)))
        )
        resumable = self.state in ("paused", "device lost") or (active and bool(missing))
        self.start_action.setText("Resume" if resumable else "Start")
        self.pause_action.setEnabled(self.state == "listening")
        self.stop_action.setEnabled(
            self.state in ("listening", "replaying", "paused", "device lost")
        )
        self.open_action.setEnabled(ready)
        self.export_action.setEnabled(self.log is not None)
        self._show_other_side()

    # ------------------------------------------------------------------ dialogs
    def _choose_recording(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open recording", "", "Audio (*.wav *.flac *.ogg *.mp3 *.opus);;All files (*)"
        )
        if path:
            self.open_recording(path)

    def _choose_review(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Review a session", str(self.sessions_dir), "CSV (*.csv);;All files (*)"
        )
        if path:
            self.open_review(path)

    def _choose_export(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export session CSV", "session.csv", "CSV (*.csv)"
        )
        if path:
            self.export_csv(path)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.timer.stop()
        self._stop_sessions()
        self._close_log()
        self._save_settings()
        super().closeEvent(event)


def _hand(engine: Engine, activity: SideActivity) -> None:
    """A running engine's cues go to a new log's activity (applied by its worker)."""
    activity.continue_at(engine.activity.end_s)
    engine.activity = activity
