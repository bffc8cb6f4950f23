"""Analysing uploaded recordings: the web page's work, without Streamlit.

An upload is a name and bytes. The bytes go to a temporary file named by this module
(``upload-0``, ``upload-1``, ...), never by the upload's name, in a folder that is deleted
when the run ends, on error too. The file is then analysed exactly as ``ser-live analyze``
analyses a file (``analysis.analyze_file``, one engine, one voice per file or channel
with ``calibrate``) and its rows written by the same ``BatchOutputs``, with the upload's
name in the ``file`` column: the tables are ``analyze``'s, cell for cell. Whether a file
is audio is decided by its content (libsndfile), not by its name.

Threads: a run belongs to the thread that calls ``analyze_uploads`` (one browser
session's script thread); it shares nothing with other runs, each building its own engine.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ser_live.alerts import FILE_RULES, Alert
from ser_live.analysis import EngineOptions, Task, analyze_file
from ser_live.analysis import FileResult as Analysed
from ser_live.batch import BatchOutputs
from ser_live.review import Note, SessionRecord, Track, load_session
from ser_live.session_log import safe_cell

#: The largest upload accepted by default, in megabytes (Streamlit's own default).
DEFAULT_MAX_UPLOAD_MB = 200
#: How ``ser-live web --max-upload-mb`` tells the page its limit (Streamlit enforces it as
#: the upload arrives; the analysis checks it again).
MAX_UPLOAD_ENV = "SER_LIVE_WEB_MAX_UPLOAD_MB"
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Upload:
    name: str  # as the browser sent it: shown, never used as a path
    data: bytes


@dataclass
class SideResult:
    """One side of a file (its down-mix, or one channel)."""

    label: str  # "mix" or "channel N"
    track: Track
    summary: dict[str, str]  # the summary table's row
    cues: dict[str, str] | None = None  # the cues table's row (--channels split)


@dataclass
class UploadResult:
    name: str  # the shown name: the upload's, made unique within the run
    sides: list[SideResult] = field(default_factory=list)
    error: str | None = None
    report_html: str | None = None
    alerts: list[Alert] = field(default_factory=list)  # the default rules' (alerts.FILE_RULES)


@dataclass
class UploadRun:
    files: list[UploadResult]
    timeline_csv: bytes
    summary_csv: bytes
    cues_csv: bytes | None  # only for split channels: a conversation's sides
    alerts_csv: bytes


def shown_name(name: str, taken: set[str]) -> str:
    """The upload's name as the tables show it: its last path part, without control
    characters, unique within the run (``a.wav``, ``a.wav (2)``)."""
    base = _UNSAFE_NAME.sub("", re.split(r"[\\/]", name)[-1]).strip()[:120] or "recording"
    shown, n = base, 1
    while shown in taken:
        n += 1
        shown = f"{base} ({n})"
    taken.add(shown)
    return shown


def analyze_uploads(
    uploads: list[Upload],
    options: EngineOptions,
    split: bool = False,
    max_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1_000_000,
    on_progress: Callable[[float, str], None] | None = None,
) -> UploadRun:
    """Every upload analysed in turn; a bad one gets its one-line error and the others go
    on. ``on_progress(fraction, name)`` is called as the audio is heard."""
    from ser_live.report import render

    engine = options.build()
    taken: set[str] = set()
    names = [shown_name(u.name, taken) for u in uploads]
    with tempfile.TemporaryDirectory(prefix="ser-live-web-") as folder:
        work = Path(folder)
        plan: list[tuple[str, list[Task], str | None]] = []  # name, tasks, refusal
        total_s = 0.0  # of audio to hear, for the progress bar
        for k, (upload, name) in enumerate(zip(uploads, names, strict=True)):
            path = work / f"upload-{k}"
            if len(upload.data) > max_bytes:
                refusal = f"{name}: larger than the {max_bytes / 1e6:g} MB limit"
                plan.append((name, [Task(path, 0 if split else None)], refusal))
                continue
            path.write_bytes(upload.data)
            n_channels, length_s = _header(path)
            channels = range(n_channels) if split else [None]
            plan.append((name, [Task(path, channel) for channel in channels], None))
            total_s += length_s * len(channels)
        outputs = BatchOutputs(
            engine.labels,
            split,
            work / "timeline.csv",
            work / "summary.csv",
            work / "cues.csv" if split else None,
            shown_names={str(work / f"upload-{k}"): name for k, name in enumerate(names)},
            alerts=work / "alerts.csv",
            rules=FILE_RULES,
        )
        outputs.start([task for _, tasks, _ in plan for task in tasks])
        total_s = total_s or 1.0
        errors: dict[str, str] = {}
        fired: dict[str, list[Alert]] = {}
        done_s = 0.0
        try:
            for name, tasks, refusal in plan:
                for task in tasks:

                    def heard(update, before_s=done_s, name=name) -> None:
                        if on_progress is not None:
                            on_progress(min(1.0, (before_s + update.end_s) / total_s), name)

                    if refusal:
                        result = Analysed(str(task.path), task.channel, error=refusal)
                    else:
                        result = analyze_file(task.path, engine, task.channel, on_update=heard)
                    if result.error:
                        result.error = result.error.replace(str(task.path), name)
                        errors.setdefault(name, result.error)
                    for shown, alert in outputs.write(result):
                        fired.setdefault(shown, []).append(alert)
                    done_s += result.duration_s
        finally:
            outputs.close()
        run = UploadRun(
            _upload_results(work, names, errors, split),
            (work / "timeline.csv").read_bytes(),
            (work / "summary.csv").read_bytes(),
            (work / "cues.csv").read_bytes() if split else None,
            (work / "alerts.csv").read_bytes(),
        )
    for result in run.files:
        result.alerts = fired.get(result.name, [])
        if result.sides:
            result.report_html = render(_record_of(result, engine.labels))
    if on_progress is not None:
        on_progress(1.0, "")
    return run


def _header(path: Path) -> tuple[int, float]:
    """Channels and seconds of an upload: (1, 0.0) when unreadable, as the analysis then
    says why."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
        return info.channels, info.frames / info.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return 1, 0.0


def _rows(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _upload_results(
    work: Path, names: list[str], errors: dict[str, str], split: bool
) -> list[UploadResult]:
    """Each file's sides, read back from the tables just written (so the page shows
    what the downloads hold)."""
    summary = _rows(work / "summary.csv")
    cues = _rows(work / "cues.csv") if split else []
    record = load_session(work / "timeline.csv") if any(not r["error"] for r in summary) else None
    results = []
    for name in names:
        result = UploadResult(name, error=errors.get(name))
        cell = safe_cell(name)
        for row in summary:
            if row["file"] != cell or row["error"]:
                continue
            label = f"channel {row['channel']}" if split else "mix"
            speaker = f"{cell} [channel {row['channel']}]" if split else cell
            side_cues = next(
                (c for c in cues if c["file"] == cell and c["side"] == row.get("channel")), None
            )
            if record is not None and speaker in record.tracks:
                result.sides.append(SideResult(label, record.tracks[speaker], row, side_cues))
        results.append(result)
    return results


def _record_of(result: UploadResult, labels: list[str]) -> SessionRecord:
    """One file's sides as a session, for the HTML report (``report.render``)."""
    speakers = {side.label.removeprefix("channel "): side.track.speaker for side in result.sides}
    return SessionRecord(
        path=Path(result.name),  # only its .name is shown
        labels=list(labels),
        tracks={side.track.speaker: side.track for side in result.sides},
        notes=[
            Note("marker", a.at_s, speakers.get(a.side or "", ""), a.note) for a in result.alerts
        ],
        cues={side.track.speaker: side.cues for side in result.sides if side.cues},
    )
