"""A live call's cues and alerts, for whoever shows the sides' updates.

Threads: each side's ``SideActivity`` is fed by that side's worker (the engine); the
``CallMonitor`` itself belongs to the one thread that reads the sessions' updates (the
UI thread in the app, the main thread of ``listen``), which calls ``on_update`` and
``poll``. Alerts go to the session log at once (its lock orders rows), so a crash keeps
them.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

from ser_live.alerts import Alert, AlertMonitor, Rule
from ser_live.cues import (
    CUE_COLUMNS,
    CueSettings,
    SideActivity,
    SideCues,
    conversation_cues,
    current_silence_s,
)
from ser_live.errors import SerLiveError
from ser_live.session_log import SessionLog, safe_cell

#: How often the cues are worked out again (and the alert rules on them checked).
CUES_EVERY_S = 1.0
#: How often a row of cues per side goes to the cues CSV.
CUE_ROWS_EVERY_S = 5.0


@dataclass(frozen=True)
class CallCues:
    """Each side's cues over the whole session and over the rolling window."""

    at_s: float
    session: dict[str, SideCues]
    rolling: dict[str, SideCues]
    silence_s: float  # how long everyone has been quiet


class CuesWriter:
    """The cues CSV: a row per side and span every few seconds, flushed as it goes."""

    def __init__(self, path: Path) -> None:
        try:
            self._file = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - close()
        except OSError as exc:
            raise SerLiveError(f"cannot write {path}: {exc.strerror}") from None
        self._writer = csv.writer(self._file)
        self._writer.writerow(["timestamp", "at_s", "side", "span", *CUE_COLUMNS])

    def write(self, cues: CallCues, rolling_s: float) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        for span, by_side in (("session", cues.session), (f"last {rolling_s:g} s", cues.rolling)):
            for side, c in by_side.items():
                row = [stamp, f"{cues.at_s:.2f}", side, span, *c.as_row().values()]
                self._writer.writerow(map(safe_cell, row))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def cues_path(log_path: Path) -> Path:
    """The cues CSV beside a session log: ``session.csv`` -> ``session-cues.csv``."""
    return log_path.with_name(f"{log_path.stem}-cues.csv")


class CallMonitor:
    """Works out the cues of the sides' activities and checks the alert rules."""

    def __init__(
        self,
        activities: dict[str, SideActivity],
        rules: list[Rule] | tuple[Rule, ...],
        log: SessionLog | None = None,
        cues_csv: Path | None = None,
        settings: CueSettings | None = None,
    ) -> None:
        self.activities = activities
        self.settings = settings or CueSettings()
        self.alerts = AlertMonitor(rules)
        self.log = log
        self.writer = CuesWriter(cues_csv) if cues_csv else None
        self.latest: CallCues | None = None
        self._next_cues_s = 0.0
        self._next_row_s = CUE_ROWS_EVERY_S

    def on_update(self, side: str, update) -> list[Alert]:
        """A side's update (on the session clock), for the emotion rules."""
        probabilities = update.probabilities if update.speech else None
        return self._fired(self.alerts.on_update(side, update.end_s, probabilities))

    def poll(self, final: bool = False) -> list[Alert]:
        """Work out the cues if it is time (``final``: now, and a last row), check the
        rules on them; the alerts that fired."""
        if not self.activities:
            return []
        at_s = max(a.end_s for a in self.activities.values())
        if not final and at_s < self._next_cues_s:
            return []
        snapshots = {side: a.snapshot() for side, a in self.activities.items()}
        self._next_cues_s = at_s + CUES_EVERY_S
        session = conversation_cues(snapshots, self.settings)
        spans = {self.settings.rolling_s, *self.alerts.spans_s}
        rolling = {span: conversation_cues(snapshots, self.settings, span) for span in spans}
        silence = current_silence_s(snapshots)
        self.latest = CallCues(at_s, session, rolling[self.settings.rolling_s], silence)
        if self.writer and (final or at_s >= self._next_row_s):
            self._next_row_s = at_s + CUE_ROWS_EVERY_S
            self.writer.write(self.latest, self.settings.rolling_s)
        return self._fired(self.alerts.on_cues(at_s, rolling, silence, at_s))

    def _fired(self, alerts: list[Alert]) -> list[Alert]:
        if self.log:
            for alert in alerts:
                self.log.write_note("marker", alert.note, alert.at_s, time.time(), alert.side or "")
        return alerts

    def close(self) -> None:
        if self.writer:
            self.writer.close()
