"""The app's views. They only draw what they are given; they compute nothing of the engine's."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from ser_live import EMOTIONS
from ser_live.report import EMOTION_COLOURS


class SpectrogramView(pg.PlotWidget):
    """A scrolling log-mel spectrogram of the last ``seconds`` seconds.

    Columns go into a ring written twice over (at i and i + N), so the view is always one
    contiguous slice, with no copy and no roll.
    """

    def __init__(self, seconds: float = 10.0, columns_per_s: int = 50, n_mels: int = 64) -> None:
        super().__init__()
        self.n = int(seconds * columns_per_s)
        self.columns_per_s = columns_per_s
        self._ring = np.full((2 * self.n, n_mels), -100.0, dtype=np.float32)
        self._head = 0
        self._dirty = True
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setLookupTable(pg.colormap.get("inferno").getLookupTable(nPts=256, alpha=False))
        self.addItem(self.image)
        self._rect = QtCore.QRectF(-seconds, 0, seconds, n_mels)
        self.setMouseEnabled(False, False)
        self.hideButtons()
        self.setMenuEnabled(False)
        self.setXRange(-seconds, 0, padding=0)
        self.setYRange(0, n_mels, padding=0)
        self.setLabel("bottom", "seconds ago")
        self.setLabel("left", "mel band")
        self.setTitle("spectrogram (log-mel)")

    def add_columns(self, columns: np.ndarray) -> None:
        for column in columns[-self.n :]:
            self._ring[self._head] = column
            self._ring[self._head + self.n] = column
            self._head = (self._head + 1) % self.n
        self._dirty = self._dirty or len(columns) > 0

    def clear_data(self) -> None:
        self._ring[:] = -100.0
        self._dirty = True

    def paint(self) -> None:
        if self._dirty:
            view = self._ring[self._head : self._head + self.n]
            self.image.setImage(view.T, autoLevels=False, levels=(-110.0, -30.0), rect=self._rect)
            self._dirty = False


#: How far the session clock moves before a timeline scrolls with it.
FOLLOW_STEP_S = 0.25
#: The dominant-emotion band: where it sits above the lines, and its time step.
BAND_Y = (1.02, 1.1)
BAND_STEP_S = 0.5
BAND_RGB = np.array(
    [[int(EMOTION_COLOURS[e][i : i + 2], 16) for i in (1, 3, 5)] for e in EMOTIONS], np.ubyte
)


class TimelineView(pg.PlotWidget):
    """Rolling emotion probabilities: one line per emotion, gaps where there is no speech."""

    def __init__(self, seconds: float = 120.0, capacity: int = 20_000, title: str = "") -> None:
        super().__init__()
        if title:
            self.setTitle(title)
        self.seconds = seconds
        self.capacity = capacity
        self._t = np.zeros(capacity, dtype=np.float64)
        self._p = np.full((capacity, len(EMOTIONS)), np.nan, dtype=np.float32)
        self._count = 0
        self._dirty = False
        self._scrolled = False  # the clock moved, the data did not
        self.now = 0.0
        self.addLegend(offset=(5, 5), labelTextSize="8pt", colCount=4)
        self.curves = [
            self.plot([], [], pen=pg.mkPen(EMOTION_COLOURS[e], width=2), name=e, connect="finite")
            for e in EMOTIONS
        ]
        self.markers: list[pg.InfiniteLine] = []
        # The dominant emotion as a band above the lines: its colour, opaque as it is sure.
        self.band = pg.ImageItem(axisOrder="row-major")
        self.addItem(self.band)
        self.show_lines(True)
        self.setYRange(0, 1.32, padding=0)  # the space above 1.0 holds the band and legend
        self.getAxis("left").setTicks([[(v / 5, f"{v / 5:.1f}") for v in range(6)]])
        self.setMouseEnabled(False, False)
        self.hideButtons()
        self.setMenuEnabled(False)
        self.disableAutoRange()
        self.setLabel("bottom", "session time (s)")
        self.setLabel("left", "probability")
        self.setXRange(-seconds, 0, padding=0)

    def show_lines(self, shown: bool) -> None:
        """The seven probability lines as well as the band (or the band alone)."""
        for curve in self.curves:
            curve.setVisible(shown)

    def _paint_band(self, t: np.ndarray, p: np.ndarray) -> None:
        """One column per half second of the view: the dominant emotion's colour, its
        probability as the opacity; clear where there is no speech."""
        columns = round(self.seconds / BAND_STEP_S)
        start = max(0.0, self.now - self.seconds)
        image = np.zeros((1, columns, 4), dtype=np.ubyte)
        spoken = ~np.isnan(p[:, 0])
        index = np.floor((t[spoken] - start) / BAND_STEP_S - 1e-9).astype(int)
        inside = (index >= 0) & (index < columns)
        best = p[spoken].argmax(axis=1)[inside]
        image[0, index[inside], :3] = BAND_RGB[best]
        image[0, index[inside], 3] = np.round(255 * p[spoken].max(axis=1)[inside])
        rect = QtCore.QRectF(start, BAND_Y[0], self.seconds, BAND_Y[1] - BAND_Y[0])
        self.band.setImage(image, autoLevels=False, levels=(0, 255), rect=rect)

    def add(self, end_s: float, probabilities: np.ndarray | None) -> None:
        if self._count == self.capacity:  # keep the newest half: memory stays flat
            half = self.capacity // 2
            self._t[:half], self._p[:half] = self._t[half:], self._p[half:]
            self._count = half
        self._t[self._count] = end_s
        self._p[self._count] = np.nan if probabilities is None else probabilities
        self._count += 1
        self.now = max(self.now, end_s)
        self._dirty = True

    def add_marker(self, at_s: float, note: str) -> None:
        line = pg.InfiniteLine(
            at_s,
            angle=90,
            pen=pg.mkPen("#444", style=QtCore.Qt.DashLine),
            label=note,
            labelOpts={"position": 0.7, "color": "#444"},
        )
        self.addItem(line)
        self.markers.append(line)
        self.now = max(self.now, at_s)
        self._dirty = True

    def follow(self, now: float) -> None:
        """Scroll to session time ``now`` (the timelines of both sides share one clock).

        Only in steps of a quarter second: the clock moves with every audio block, and
        redrawing seven curves at every paint for it cost more than the rest of the
        window together."""
        if now >= self.now + FOLLOW_STEP_S:
            self.now = now
            self._scrolled = True

    def clear_data(self) -> None:
        self._count = 0
        self.now = 0.0
        for line in self.markers:
            self.removeItem(line)
        self.markers.clear()
        self._dirty = True

    @property
    def points(self) -> int:
        return self._count

    def paint(self) -> None:
        """New data: the curves and the range; the clock alone: the range."""
        if self._dirty:
            t = self._t[: self._count]
            first = int(np.searchsorted(t, self.now - self.seconds - 1))
            for i, curve in enumerate(self.curves):
                curve.setData(t[first:], self._p[first : self._count, i], skipFiniteCheck=True)
        if self._dirty or self._scrolled:
            t = self._t[: self._count]
            first = int(np.searchsorted(t, self.now - self.seconds - 1))
            self._paint_band(t[first:], self._p[first : self._count])
        if self._dirty or self._scrolled:
            low = max(0.0, self.now - self.seconds)
            self.setXRange(low, max(self.seconds, self.now), padding=0)
        self._dirty = self._scrolled = False


class EmotionPanel(QtWidgets.QFrame):
    """One side's current emotion, readable at a glance: the verdict, its confidence, all
    seven probabilities as bars, the speech light and the input level."""

    def __init__(self, title: str = "", font_size: int = 30) -> None:
        super().__init__()
        self.setFrameShape(QtWidgets.QFrame.StyledPanel)
        self.title = QtWidgets.QLabel(title)
        self.title.setStyleSheet("font-weight: bold; color: #333;")
        self.title.setVisible(bool(title))
        self.emotion = QtWidgets.QLabel("—")
        font = self.emotion.font()
        font.setPointSize(font_size)
        font.setBold(True)
        self.emotion.setFont(font)
        self.emotion.setAlignment(QtCore.Qt.AlignCenter)
        self.emotion.setMinimumWidth(260)
        self.confidence = QtWidgets.QProgressBar()
        self.confidence.setRange(0, 100)
        self.confidence.setFormat("confidence %p%")
        # The last phrase's verdict, with the second opinion fused in where there is one.
        self.phrase = QtWidgets.QLabel("last phrase: —")
        self.phrase.setAlignment(QtCore.Qt.AlignCenter)
        self.speech = QtWidgets.QLabel()
        self.speech.setAlignment(QtCore.Qt.AlignCenter)
        self.level = QtWidgets.QProgressBar()
        self.level.setRange(-60, 0)
        self.level.setFormat("input %v dBFS")
        self.level.setValue(-60)
        # This side's conversation cues (ser_live.cues), over the last minute.
        self.cues = QtWidgets.QLabel("")
        self.cues.setWordWrap(True)
        self.cues.setAlignment(QtCore.Qt.AlignCenter)
        self.cues.setStyleSheet("font-size: 9pt; color: #333;")
        self.state = QtWidgets.QLabel()
        self.state.setWordWrap(True)
        self.state.setAlignment(QtCore.Qt.AlignCenter)
        self.bars: dict[str, QtWidgets.QProgressBar] = {}
        bars = QtWidgets.QGridLayout()
        bars.setVerticalSpacing(1)
        for row, label in enumerate(EMOTIONS):
            bar = QtWidgets.QProgressBar()
            bar.setRange(0, 100)
            bar.setTextVisible(False)
            bar.setFixedHeight(9)
            bar.setStyleSheet(
                "QProgressBar { border: none; background: #eee; }"
                f"QProgressBar::chunk {{ background: {EMOTION_COLOURS[label]}; }}"
            )
            name = QtWidgets.QLabel(label)
            name.setStyleSheet("font-size: 8pt; color: #555;")
            bars.addWidget(name, row, 0)
            bars.addWidget(bar, row, 1)
            self.bars[label] = bar
        layout = QtWidgets.QVBoxLayout(self)
        for widget in (self.title, self.emotion, self.confidence):
            layout.addWidget(widget)
        layout.addLayout(bars)
        for widget in (self.phrase, self.cues, self.speech, self.level, self.state):
            layout.addWidget(widget)
        layout.addStretch(1)
        self.show_silence()

    def show_emotion(self, emotion: str, confidence: float) -> None:
        self.emotion.setText(emotion)
        self.emotion.setStyleSheet(f"color: {EMOTION_COLOURS.get(emotion, '#000')};")
        self.confidence.setValue(round(confidence * 100))
        self.speech.setText("● speech")
        self.speech.setStyleSheet("color: #2e9e4f; font-weight: bold;")

    def show_probabilities(self, probabilities: np.ndarray | None) -> None:
        """All seven probabilities as bars (empty without speech)."""
        for i, label in enumerate(EMOTIONS):
            value = 0 if probabilities is None else round(float(probabilities[i]) * 100)
            self.bars[label].setValue(value)

    def show_phrase(self, emotion: str, confidence: float) -> None:
        self.phrase.setText(f"last phrase: {emotion} {round(confidence * 100)}%")
        self.phrase.setStyleSheet(f"color: {EMOTION_COLOURS.get(emotion, '#000')};")

    def show_cues(self, recent, session) -> None:
        """This side's cues: the last minute's, and the session's talk share."""

        def part(value, text):
            return "" if value is None else text.format(value)

        pieces = [
            part(recent.talk_share, "talk {:.0%}"),
            part(session.talk_share, "(call {:.0%})"),
            part(recent.pace_syll_per_s, "pace {:.1f} syl/s"),
            f"overlaps {recent.overlaps}",
            f"interrupts {recent.interruptions}",
            part(recent.loudness_db, "loudness {:+.0f} dB"),
            part(recent.pitch_st, "pitch {:+.1f} st"),
        ]
        self.cues.setText("last minute: " + " · ".join(p for p in pieces if p))

    def set_title(self, title: str) -> None:
        self.title.setText(title)
        self.title.setVisible(bool(title))

    def show_silence(self, text: str = "—") -> None:
        self.emotion.setText(text)
        self.emotion.setStyleSheet("color: #999999;")
        self.confidence.setValue(0)
        self.show_probabilities(None)
        self.speech.setText("○ silence")
        self.speech.setStyleSheet("color: #999999;")

    def show_level(self, level_db: float) -> None:
        value = int(max(-60.0, min(0.0, level_db)))
        if value != self.level.value():  # a styled bar repaints on every set
            self.level.setValue(value)

    def show_state(self, text: str, warning: bool = False) -> None:
        self.state.setText(text)
        self.state.setStyleSheet(
            "color: #c0392b; font-weight: bold;" if warning else "color: #555;"
        )


def colour_icon(colour: str) -> QtGui.QIcon:
    pixmap = QtGui.QPixmap(12, 12)
    pixmap.fill(QtGui.QColor(colour))
    return QtGui.QIcon(pixmap)


class AlertBanner(QtWidgets.QFrame):
    """Alerts that fired, shown until dismissed: the newest, and how many more."""

    def __init__(self) -> None:
        super().__init__()
        self.setStyleSheet("AlertBanner { background: #fde2c8; border: 2px solid #D55E00; }")
        self.text = QtWidgets.QLabel()
        self.text.setStyleSheet("font-weight: bold; color: #5a2000;")
        self.text.setWordWrap(True)
        self.dismiss = QtWidgets.QPushButton("Dismiss")
        self.dismiss.clicked.connect(self.clear)
        layout = QtWidgets.QHBoxLayout(self)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.dismiss)
        self.alerts: list[str] = []
        self.hide()

    def add(self, text: str) -> None:
        self.alerts.append(text)
        more = f"  (+{len(self.alerts) - 1} earlier)" if len(self.alerts) > 1 else ""
        self.text.setText(f"⚠ {text}{more}")
        self.show()

    def clear(self) -> None:
        self.alerts.clear()
        self.hide()
