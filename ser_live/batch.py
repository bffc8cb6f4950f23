"""The outputs of ``analyze``: the timeline, summary and cues tables, written as results
arrive, and resumed after an interruption.

Each file's rows are written whole: its timeline rows, then its cues rows (once every
channel of the file is in), then its summary row last. So the summary is the ledger of
what is done, and Ctrl-C, which is held off while one result is written, leaves whole
files only. ``--resume`` reads the ledger back, keeps the rows of every file done
without error, drops the rest (a half-written tail after a hard kill included) and hands
back the tasks still to do.

Threads: one thread (the command's) writes.
"""

from __future__ import annotations

import csv
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ser_live.alerts import Alert, Rule
from ser_live.analysis import FileResult, Task, voice_runs
from ser_live.errors import SerLiveError
from ser_live.session_log import TableWriter, fmt, probability_cells, safe_cell


def read_manifest(path: Path) -> list[Path]:
    """Paths listed in a text file (one per line; blank lines and ``#`` comments skipped)
    or a CSV with a ``path`` column; relative ones are relative to the manifest's folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SerLiveError(f"cannot read the manifest {path}: {reason}") from None
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if lines and path.suffix.lower() == ".csv":
        rows = list(csv.reader(lines))
        if "path" not in rows[0]:
            raise SerLiveError(f"{path}: a CSV manifest needs a 'path' column")
        column = rows[0].index("path")
        lines = [row[column] for row in rows[1:] if len(row) > column and row[column].strip()]
    return [path.parent / line.strip() for line in lines]


@contextmanager
def held_interrupts() -> Iterator[None]:
    """Ctrl-C waits until the block is done (on the main thread; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


def _key(path: str, channel: int | None) -> tuple[str, str]:
    """A task as its summary row names it: (file cell, channel cell)."""
    return safe_cell(path), "" if channel is None else str(channel + 1)


def _file_groups(tasks: list[Task]) -> list[list[Task]]:
    """Tasks grouped so that every unit of work (``voice_runs``) and every file (its
    channels make one file's cues) lie in one group: what is redone together."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    for run in voice_runs(tasks):
        first = root(str(run[0].path))
        for task in run[1:]:
            parent[root(str(task.path))] = first
    groups: dict[str, list[Task]] = {}
    for task in tasks:
        groups.setdefault(root(str(task.path)), []).append(task)
    return list(groups.values())


def _read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """A table's header and whole rows (a last line without its newline is half-written)."""
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = list(csv.reader(text.splitlines()))
    return (rows[0] if rows else []), rows[1:]


class BatchOutputs:
    """The tables ``analyze`` was asked for (any of them may be None)."""

    def __init__(
        self,
        labels: list[str],
        split: bool,
        timeline: Path | None = None,
        summary: Path | None = None,
        cues: Path | None = None,
        shown_names: dict[str, str] | None = None,
        alerts: Path | None = None,
        rules: list[Rule] | tuple[Rule, ...] = (),
    ) -> None:
        from ser_live.cues import CUE_COLUMNS

        self.labels = labels
        self.split = split
        # What the file column says for a file (default: its path as given); the web page
        # shows an upload's own name for the temporary file it was written to.
        self.shown_names = shown_names or {}
        p_cols = [f"p_{label}" for label in labels]
        first = ["file", "channel"] if split else ["file"]
        verdict = ["emotion", "confidence", *p_cols]
        self.headers = {
            "timeline": [*first, "start_s", "end_s", "speech", *verdict],
            "summary": [*first, "duration_s", "speech_s", *verdict, "error"],
            "cues": ["file", "side", *CUE_COLUMNS, "error"],
            "alerts": ["file", "side", "at_s", "rule", "condition"],
        }
        tables = {"timeline": timeline, "summary": summary, "cues": cues, "alerts": alerts}
        self.paths = {name: path for name, path in tables.items() if path is not None}
        # The alert rules checked on each file's sides (``conversation.replay_alerts``).
        self.rules = list(rules)
        self.writers: dict[str, TableWriter] = {}
        self._channels_expected: dict[str, int] = {}
        self._waiting: dict[str, list[FileResult]] = {}  # a file's channels, for its cues

    @property
    def any(self) -> bool:
        return bool(self.paths)

    def start(self, tasks: list[Task], resume: bool = False) -> list[Task]:
        """Open the tables; returns the tasks to analyse (with ``resume``, those not done)."""
        todo = self._resume(tasks) if resume else tasks
        for name, path in self.paths.items():
            self.writers[name] = TableWriter(
                path, self.headers[name], append=resume and path.exists()
            )
        for task in todo:
            key = str(task.path)
            self._channels_expected[key] = self._channels_expected.get(key, 0) + 1
        return todo

    def _resume(self, tasks: list[Task]) -> list[Task]:
        if "summary" not in self.paths:
            raise SerLiveError("--resume needs --summary: the summary records what is done")
        tables: dict[str, list[list[str]]] = {}
        for name, path in self.paths.items():
            if not path.exists():
                continue
            try:
                header, rows = _read_table(path)
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                raise SerLiveError(f"--resume: cannot read {path} ({exc})") from None
            if header != self.headers[name]:
                raise SerLiveError(
                    f"--resume: {path} has other columns than this run writes (another "
                    "model or --channels?); give new output files"
                )
            tables[name] = rows
        summary = tables.get("summary", [])
        channel_cell = 1 if self.split else None
        done = {
            (row[0], row[channel_cell] if channel_cell else "")
            for row in summary
            if not row[-1]  # an error row is tried again
        }
        with_cues = {row[0] for row in tables.get("cues", []) if not row[-1]}
        kept_files: set[str] = set()
        todo: list[Task] = []
        for group in _file_groups(tasks):
            complete = all(_key(str(t.path), t.channel) in done for t in group) and (
                "cues" not in self.paths or all(safe_cell(str(t.path)) in with_cues for t in group)
            )
            if complete:
                kept_files.update(safe_cell(str(t.path)) for t in group)
            else:
                todo.extend(group)
        missing = [n for n in self.paths if n not in tables]
        if kept_files and missing:
            raise SerLiveError(
                f"--resume: {self.paths[missing[0]]} is missing, but the summary lists "
                "files as done; give the same output files as the interrupted run"
            )
        for name, rows in tables.items():
            keep = [row for row in rows if row and row[0] in kept_files]
            if len(keep) != len(rows):
                self._rewrite(self.paths[name], self.headers[name], keep)
        order = {id(t): k for k, t in enumerate(tasks)}
        return sorted(todo, key=lambda t: order[id(t)])

    @staticmethod
    def _rewrite(path: Path, header: list[str], rows: list[list[str]]) -> None:
        partial = path.with_name(path.name + ".resume-partial")
        with open(partial, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(partial, path)

    def write(self, result: FileResult) -> list[tuple[str, Alert]]:
        """All of one result's rows (Ctrl-C waits until they are written); the alerts
        that fired on its file (once all its channels are in), with the file's name."""
        with held_interrupts():
            return self._write(result)

    def _write(self, result: FileResult) -> list[tuple[str, Alert]]:
        labels = self.labels
        ch = [str(result.channel + 1)] if self.split and result.channel is not None else []
        if "timeline" in self.writers:
            for update in result.updates:
                self.writers["timeline"].write(
                    [
                        self._shown(result.path),
                        *ch,
                        f"{update.start_s:.2f}",
                        f"{update.end_s:.2f}",
                        int(update.speech),
                        update.emotion or "",
                        fmt(update.confidence),
                        *probability_cells(update, len(labels)),
                    ]
                )
        fired: list[tuple[str, Alert]] = []
        whole = self._whole_file(result) if "cues" in self.writers or self.rules else None
        if whole is not None:
            sides = {"mix" if r.channel is None else str(r.channel + 1): r for r in whole}
            if "cues" in self.writers:
                self._add_cues(sides)
            if self.rules:
                fired = self._add_alerts(sides)
        if "summary" in self.writers:
            mean = result.speech_probabilities
            best = None if mean is None else int(mean.argmax())
            self.writers["summary"].write(
                [
                    self._shown(result.path),
                    *ch,
                    f"{result.duration_s:.2f}",
                    f"{result.speech_s:.2f}",
                    "" if best is None else labels[best],
                    "" if best is None else f"{mean[best]:.4f}",
                    *(["" for _ in labels] if mean is None else [f"{p:.4f}" for p in mean]),
                    result.error or "",
                ]
            )
        return fired

    def _shown(self, path: str) -> str:
        return self.shown_names.get(path, path)

    def _whole_file(self, result: FileResult) -> list[FileResult] | None:
        """A file's results (one per channel, in channel order) once all are in; None
        until then. The channels are the sides of one conversation."""
        results = self._waiting.setdefault(result.path, [])
        results.append(result)
        if len(results) < self._channels_expected.get(result.path, 1):
            return None
        del self._waiting[result.path]
        return sorted(results, key=lambda r: r.channel or 0)

    def _add_cues(self, sides: dict[str, FileResult]) -> None:
        from ser_live.cues import CUE_COLUMNS, conversation_cues

        writer = self.writers["cues"]
        if any(r.error or r.activity is None for r in sides.values()):
            for name, r in sides.items():
                row = [self._shown(r.path), name, *[""] * len(CUE_COLUMNS), r.error or "no audio"]
                writer.write(row)
            return
        cues = conversation_cues({name: r.activity for name, r in sides.items()})
        path = next(iter(sides.values())).path
        for name, c in cues.items():
            writer.write([self._shown(path), name, *c.as_row().values(), ""])

    def _add_alerts(self, sides: dict[str, FileResult]) -> list[tuple[str, Alert]]:
        from ser_live.conversation import replay_alerts

        heard = {n: (r.updates, r.activity) for n, r in sides.items() if r.activity is not None}
        if not heard or any(r.error for r in sides.values()):
            return []
        shown = self._shown(next(iter(sides.values())).path)
        fired = [(shown, alert) for alert in replay_alerts(heard, self.rules)]
        if "alerts" in self.writers:
            for _, alert in fired:
                self.writers["alerts"].write(
                    [
                        shown,
                        alert.side or "",
                        f"{alert.at_s:.2f}",
                        alert.rule.name,
                        alert.rule.describe(),
                    ]
                )
        return fired

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
