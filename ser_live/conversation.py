"""A call's cues and alerts: live, for whoever shows the sides' updates, and replayed
for a recording's sides once they are analysed (``replay_alerts``).

Threads: each side's ``SideActivity`` is fed by that side's worker (the engine); the
``CallMonitor`` itself belongs to the one thread that reads the sessions' updates (the
UI thread in the app, the main thread of ``listen``), which calls ``on_update`` and
``poll``. Alerts go to the session log at once (its lock orders rows), so a crash keeps
them.
"""

from __future__ import annotations

import csv
import datetime as dt
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ser_live.alerts import Alert, AlertMonitor, Rule
from ser_live.cues import (
    CUE_COLUMNS,
    FRAME_S,
    Activity,
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
        # The session log's format: local time with its offset, to the millisecond.
        stamp = dt.datetime.now().astimezone().isoformat(timespec="milliseconds")
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


def replay_alerts(
    sides: dict[str, tuple[list, Activity]],
    rules: list[Rule] | tuple[Rule, ...],
    settings: CueSettings | None = None,
) -> list[Alert]:
    """The alerts a live session would have raised on a recording's sides (side ->
    (its updates, its activity), on one clock): the updates in time order for the
    emotion rules and, every ``CUES_EVERY_S``, the cues of what was heard so far for the
    others, as ``CallMonitor`` does live. In order of time."""
    settings = settings or CueSettings()
    monitor = AlertMonitor(rules)
    needs_cues = any(r.kind != "emotion" for r in rules)
    end_s = max((a.end_s for _, a in sides.values()), default=0.0)
    events = sorted(
        (u.end_s, k, side, u) for side, (updates, _) in sides.items() for k, u in enumerate(updates)
    )
    polls = np.arange(CUES_EVERY_S, end_s + CUES_EVERY_S, CUES_EVERY_S) if needs_cues else []
    alerts: list[Alert] = []
    next_poll = 0
    for at_s, _, side, update in [*events, (np.inf, 0, "", None)]:
        while next_poll < len(polls) and polls[next_poll] <= at_s:
            t = min(float(polls[next_poll]), end_s)
            heard = {s: _until(a, t) for s, (_, a) in sides.items()}
            rolling = {
                span: conversation_cues(heard, settings, span, voice=False)
                for span in monitor.spans_s
            }
            alerts += monitor.on_cues(t, rolling, current_silence_s(heard), t)
            next_poll += 1
        if update is not None:
            probabilities = update.probabilities if update.speech else None
            alerts += monitor.on_update(side, update.end_s, probabilities)
    return alerts


def _until(activity: Activity, at_s: float) -> Activity:
    """What a side's activity held at ``at_s`` on the session clock (its speech; what
    was worked out on the whole of it does not carry over)."""
    frames = max(0, round((at_s - activity.offset_s) / FRAME_S))
    return replace(activity, speech=activity.speech[:frames], measured={}, settled=None)
