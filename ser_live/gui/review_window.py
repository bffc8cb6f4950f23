"""Reviewing a past session: every side's whole timeline (zoom with the wheel, drag to
scroll, the sides' time axes linked), the markers listed (a click centres the timelines
on one), the summary, and the HTML report.

Threads: all on the UI thread. A session log is read once, when the window opens; a
log of hours reads in well under a second.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from ser_live.errors import SerLiveError
from ser_live.report import EMOTION_COLOURS, clock, write_report
from ser_live.review import SessionRecord, cues_text, dominant, load_session, summarise_all

#: Seconds of session shown around a marker that is clicked.
MARKER_SPAN_S = 30.0


class ReviewTimeline(pg.PlotWidget):
    """One side's whole timeline: a line per emotion, gaps where there was no speech."""

    def __init__(self, record: SessionRecord, speaker: str) -> None:
        super().__init__()
        track = record.tracks[speaker]
        self.setTitle(speaker)
        self.addLegend(offset=(5, 5), labelTextSize="8pt", colCount=4)
        silent = ~track.speech
        for i, label in enumerate(record.labels):
            p = track.probabilities[:, i].copy()
            p[silent] = np.nan
            self.plot(
                track.end_s,
                p,
                pen=pg.mkPen(EMOTION_COLOURS.get(label, "#000"), width=2),
                name=label,
                connect="finite",
            )
        for note in record.markers:
            if note.speaker in ("", speaker):
                self.addItem(
                    pg.InfiniteLine(
                        note.at_s,
                        angle=90,
                        pen=pg.mkPen("#444", style=QtCore.Qt.DashLine),
                        label=note.text,
                        labelOpts={"position": 0.7, "color": "#444"},
                    )
                )
        self.setYRange(0, 1.32, padding=0)
        # Room for half a marker span beyond either end: any marker can be centred.
        end = max(record.duration_s, 1.0)
        self.setLimits(yMin=0, yMax=1.32, xMin=-MARKER_SPAN_S / 2, xMax=end + MARKER_SPAN_S / 2)
        self.setMouseEnabled(x=True, y=False)
        self.setLabel("bottom", "session time (s)")
        self.setLabel("left", "probability")
        self.setXRange(0, max(record.duration_s, 1.0), padding=0.01)


class ReviewWindow(QtWidgets.QMainWindow):
    def __init__(self, record: SessionRecord) -> None:
        super().__init__()
        self.record = record
        self.setWindowTitle(f"ser-live review — {record.path.name}")
        self.summaries = summarise_all(record)
        self.plots: dict[str, ReviewTimeline] = {}
        plots = QtWidgets.QWidget()
        plot_layout = QtWidgets.QVBoxLayout(plots)
        first = None
        for speaker in record.tracks:
            plot = ReviewTimeline(record, speaker)
            if first is None:
                first = plot
            else:
                plot.setXLink(first)
            self.plots[speaker] = plot
            plot_layout.addWidget(plot, 1)
        if not self.plots:
            plot_layout.addWidget(QtWidgets.QLabel("This log has no analysed windows."))

        self.summary = QtWidgets.QTextBrowser()
        self.summary.setHtml(self._summary_html())
        self.marker_list = QtWidgets.QListWidget()
        for note in sorted(record.markers, key=lambda n: n.at_s):
            who = f" ({note.speaker})" if note.speaker else ""
            item = QtWidgets.QListWidgetItem(f"{clock(note.at_s)}{who}  {note.text}")
            item.setData(QtCore.Qt.UserRole, note.at_s)
            self.marker_list.addItem(item)
        self.marker_list.itemClicked.connect(self._go_to_marker)
        self.marker_list.itemActivated.connect(self._go_to_marker)
        self.export_button = QtWidgets.QPushButton("Export report…")
        self.export_button.clicked.connect(self._choose_report)
        side = QtWidgets.QVBoxLayout()
        side.addWidget(QtWidgets.QLabel("Summary"))
        side.addWidget(self.summary, 3)
        side.addWidget(QtWidgets.QLabel("Markers (click to go there)"))
        side.addWidget(self.marker_list, 2)
        side.addWidget(self.export_button)
        side_widget = QtWidgets.QWidget()
        side_widget.setLayout(side)
        side_widget.setMaximumWidth(360)
        central = QtWidgets.QWidget()
        layout = QtWidgets.QHBoxLayout(central)
        layout.addWidget(side_widget)
        layout.addWidget(plots, 1)
        self.setCentralWidget(central)
        self.status = self.statusBar()
        self.resize(1200, 720)

    @classmethod
    def open(cls, path: str | Path) -> ReviewWindow:
        """Raises ``SerLiveError`` for a file that is not a session log or timeline."""
        return cls(load_session(path))

    def _summary_html(self) -> str:
        parts = [f"<p><b>{clock(self.record.duration_s)}</b> of session</p>"]
        for s in self.summaries:
            top = dominant(s)
            shares = ", ".join(
                f"{label} {share:.0%}" for label, share in s.shares.items() if share >= 0.005
            )
            cues = cues_text(self.record.cues.get(s.speaker, {}))
            moments = "; ".join(
                f"{p.emotion} {p.probability:.2f} at {clock(p.start_s)}"
                for found in s.peaks.values()
                for p in found[:1]
            )
            parts.append(
                f"<p><b>{html.escape(s.speaker)}</b>: {s.speech_s:.0f} s of speech"
                + (f", mostly <b>{top}</b>" if top else ", no speech")
                + (f"<br>{shares}" if shares else "")
                + (f"<br>strongest: {moments}" if moments else "")
                + (f"<br>cues: {html.escape(', '.join(cues))}" if cues else "")
                + "</p>"
            )
        return "".join(parts)

    def _go_to_marker(self, item: QtWidgets.QListWidgetItem) -> None:
        self.go_to(float(item.data(QtCore.Qt.UserRole)))

    def go_to(self, at_s: float) -> None:
        """Centre every side's timeline on session time ``at_s``."""
        for plot in self.plots.values():  # linked: setting one moves all
            plot.setXRange(at_s - MARKER_SPAN_S / 2, at_s + MARKER_SPAN_S / 2, padding=0)
            break
        self.status.showMessage(f"{clock(at_s)}", 3000)

    def visible_range(self) -> tuple[float, float]:
        plot = next(iter(self.plots.values()))
        low, high = plot.viewRange()[0]
        return float(low), float(high)

    def export_report(self, target: str | Path) -> bool:
        try:
            write_report(self.record, target)
        except SerLiveError as exc:
            self.status.showMessage(str(exc), 8000)
            return False
        self.status.showMessage(f"Report written to {target}", 5000)
        return True

    def _choose_report(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self,
            "Export report",
            str(self.record.path.with_suffix(".html")),
            "HTML (*.html)",
        )
        if path:
            self.export_report(path)
