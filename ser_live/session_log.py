"""CSV writers: the live session log, and the timeline and summary of ``analyze``.

Every row is flushed (and fsync'ed for the session log) as it is written, so a crash, a
killed process or a pulled device loses at most the row being written. The session log
is written from several threads (each side's worker, markers from the UI): a lock
serialises rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import threading
import time
from pathlib import Path
from typing import IO

import numpy as np

from ser_live.engine import Update
from ser_live.errors import SerLiveError
from ser_live.second_opinion import DUSHA_LABELS, PhraseVerdict

#: What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """The cell as text, with a quote before a formula-like start (a marker note
    ``=HYPERLINK(…)``, a file named ``@cmd.wav``), so a spreadsheet shows the text instead
    of running it. Numbers, negative ones too, are left as they are."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_STARTS):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def probability_cells(update: Update, n_labels: int) -> list[str]:
    if update.probabilities is None:
        return [""] * n_labels
    return [fmt(float(p)) for p in update.probabilities]


class SessionLog:
    """The live session log: one row per window, marker or event, written as it happens.

    Rows carry the speaker (the side of a call: "you", "other" or a name the user gave)
    and the source it was heard on; each side writes through its own ``SideLog``.
    """

    def __init__(self, path: str | Path, labels: list[str]) -> None:
        self.path = Path(path)
        self.labels = labels
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Open for the whole session, closed by close(): no context manager can span it.
            self._file: IO[str] | None = open(self.path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise SerLiveError(f"cannot write session log {self.path}: {exc.strerror}") from None
        self._writer = csv.writer(self._file)
        self._row(self.header())

    def header(self) -> list[str]:
        return [
            "timestamp",
            "kind",
            "speaker",
            "source",
            "start_s",
            "end_s",
            "speech",
            "speech_ratio",
            "level_db",
            "emotion",
            "confidence",
            *[f"p_{label}" for label in self.labels],
            "note",
        ]

    def side(self, speaker: str, source: str) -> SideLog:
        """A writer whose rows are stamped with ``speaker`` and ``source``."""
        return SideLog(self, speaker, source)

    def _row(self, row: list[str]) -> None:
        with self._lock:
            if self._file is None:
                return
            self._writer.writerow(map(safe_cell, row))
            self._file.flush()
            os.fsync(self._file.fileno())

    @staticmethod
    def _timestamp(wall_time: float) -> str:
        return dt.datetime.fromtimestamp(wall_time).astimezone().isoformat(timespec="milliseconds")

    def write_update(self, update: Update, speaker: str = "", source: str = "") -> None:
        self._row(
            [
                self._timestamp(update.wall_time),
                "window",
                speaker,
                source,
                fmt(update.start_s, 2),
                fmt(update.end_s, 2),
                "1" if update.speech else "0",
                fmt(update.speech_ratio, 2),
                fmt(update.level_db, 1),
                update.emotion or "",
                fmt(update.confidence),
                *probability_cells(update, len(self.labels)),
                "",
            ]
        )

    def write_phrase(self, verdict: PhraseVerdict, speaker: str = "", source: str = "") -> None:
        """A phrase's verdict once it has ended: its windows' mean fused with the second
        opinion (named in the note) where there is one."""
        note = ""
        if verdict.theirs is not None:
            theirs = DUSHA_LABELS[int(np.argmax(verdict.theirs))]
            note = f"second opinion: {theirs} {float(np.max(verdict.theirs)):.2f}"
        self._row(
            [
                self._timestamp(time.time()),
                "phrase",
                speaker,
                source,
                fmt(verdict.start_s, 2),
                fmt(verdict.end_s, 2),
                "1",
                "",
                "",
                verdict.emotion,
                fmt(verdict.confidence),
                *[fmt(float(p)) for p in verdict.probabilities],
                note,
            ]
        )

    def write_note(
        self,
        kind: str,
        note: str,
        stream_s: float | None,
        wall_time: float,
        speaker: str = "",
        source: str = "",
    ) -> None:
        """A marker the user stamped, or an event (device lost, session started/stopped);
        without a speaker it is about the whole session."""
        stamp = fmt(stream_s, 2)
        self._row(
            [
                self._timestamp(wall_time),
                kind,
                speaker,
                source,
                stamp,
                stamp,
                "",
                "",
                "",
                "",
                "",
                *[""] * len(self.labels),
                note,
            ]
        )

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class SideLog:
    """One side's view of a ``SessionLog``: the same file, rows stamped with its speaker."""

    def __init__(self, log: SessionLog, speaker: str, source: str) -> None:
        self.log = log
        self.speaker = speaker
        self.source = source

    def write_update(self, update: Update) -> None:
        self.log.write_update(update, self.speaker, self.source)

    def write_phrase(self, verdict: PhraseVerdict) -> None:
        self.log.write_phrase(verdict, self.speaker, self.source)

    def write_note(self, kind: str, note: str, stream_s: float | None, wall_time: float) -> None:
        self.log.write_note(kind, note, stream_s, wall_time, self.speaker, self.source)


class TableWriter:
    """A CSV file written row by row and flushed, for ``analyze``; ``append``: go on
    after the rows already there (their header is the caller's to check)."""

    def __init__(self, path: str | Path, header: list[str], append: bool = False) -> None:
        try:
            self._file = open(path, "a" if append else "w", newline="", encoding="utf-8")  # noqa: SIM115 - see close()
        except OSError as exc:
            raise SerLiveError(f"cannot write {path}: {exc.strerror}") from None
        self._writer = csv.writer(self._file)
        if not append:
            self.write(header)

    def write(self, row: list) -> None:
        self._writer.writerow(map(safe_cell, row))
        self._file.flush()

    def close(self) -> None:
        self._file.close()
