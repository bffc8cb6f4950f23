"""Reading a past session back: a session log or an ``analyze --timeline`` table, per
speaker, and what a reviewer wants from it (time in speech, share of each emotion, the
strongest moments of anger, sadness and fear, the markers).

Plain Python and NumPy: the review window and ``ser-live report`` both build on it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ser_live.errors import SerLiveError
from ser_live.session_log import FORMULA_STARTS

#: The emotions whose strongest moments a summary lists.
PEAK_EMOTIONS = ("angry", "sad", "fearful")
#: Two listed moments of one emotion are at least this far apart.
PEAK_SEPARATION_S = 10.0


@dataclass
class Track:
    """One speaker's windows, in time order."""

    speaker: str
    source: str
    start_s: np.ndarray
    end_s: np.ndarray
    speech: np.ndarray  # bool per window
    probabilities: np.ndarray  # (n, n_labels); NaN where the window has none
    emotion: list[str]  # the smoothed verdict per window ("" without speech)

    @property
    def heard(self) -> np.ndarray:
        """The speech windows that have probabilities (bool per window)."""
        return self.speech & ~np.isnan(self.probabilities).any(axis=1)

    @property
    def hop_s(self) -> float:
        """The windows' spacing (the engine's hop)."""
        steps = np.diff(self.end_s)
        steps = steps[steps > 0]
        return float(np.median(steps)) if len(steps) else 0.5


@dataclass
class Note:
    kind: str  # "marker" or "event"
    at_s: float
    speaker: str  # "" for the whole session
    text: str


@dataclass
class Peak:
    emotion: str
    probability: float
    start_s: float
    end_s: float


@dataclass
class SideSummary:
    speaker: str
    windows: int
    speech_s: float
    shares: dict[str, float]  # share of speech time per emotion (the verdicts)
    mean_probabilities: dict[str, float]  # over speech windows
    peaks: dict[str, list[Peak]]


@dataclass
class SessionRecord:
    path: Path
    labels: list[str]
    tracks: dict[str, Track]
    notes: list[Note] = field(default_factory=list)
    started: str = ""  # the first row's wall-clock timestamp, where the log has one
    #: Each side's call cues over the whole session, from the cues CSV beside the log
    #: (``NAME-cues.csv``, its last session row per side); empty without one.
    cues: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def markers(self) -> list[Note]:
        return [n for n in self.notes if n.kind == "marker"]

    @property
    def duration_s(self) -> float:
        ends = [float(t.end_s.max()) for t in self.tracks.values() if len(t.end_s)]
        ends += [n.at_s for n in self.notes]
        return max(ends, default=0.0)


def _text(cell: str | None) -> str:
    """A cell as written by ``safe_cell``, its protective quote taken off."""
    cell = cell or ""
    if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS):
        return cell[1:]
    return cell


def _number(cell: str | None) -> float:
    try:
        return float(cell) if cell not in (None, "") else float("nan")
    except ValueError:
        return float("nan")


def load_session(path: str | Path) -> SessionRecord:
    """A session log (``ser-live listen --csv``, the app's logs) or an ``analyze
    --timeline`` table. Raises ``SerLiveError`` with a one-line reason otherwise."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
            columns = list(rows[0].keys()) if rows else []
    except OSError as exc:
        raise SerLiveError(f"cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error):
        raise SerLiveError(f"{path} is not a ser-live session log or timeline") from None
    labels = [c[2:] for c in columns if c.startswith("p_")]
    is_log = "kind" in columns
    is_timeline = "file" in columns
    if not rows or not labels or not {"start_s", "end_s"} <= set(columns):
        raise SerLiveError(f"{path} is not a ser-live session log or timeline (or is empty)")
    if not (is_log or is_timeline):
        raise SerLiveError(f"{path} is not a ser-live session log or timeline")
    windows: dict[str, list[dict]] = {}
    sources: dict[str, str] = {}
    notes = []
    for row in rows:
        if is_log:
            source = _text(row.get("source"))
            speaker = _text(row.get("speaker")) or source or "speaker"
            if row.get("speaker"):  # sides in the order the log first names them
                windows.setdefault(speaker, [])
                sources.setdefault(speaker, source)
            if row.get("kind") != "window":
                notes.append(
                    Note(
                        row.get("kind") or "event",
                        _number(row.get("start_s")),
                        _text(row.get("speaker")),
                        _text(row.get("note")),
                    )
                )
                continue
        else:
            source = _text(row.get("file"))
            channel = row.get("channel")
            speaker = source + (f" [channel {channel}]" if channel else "")
        windows.setdefault(speaker, []).append(row)
        sources.setdefault(speaker, source)
    tracks = {}
    for speaker, mine in windows.items():
        if not mine:
            continue
        p = np.array([[_number(r.get(f"p_{label}")) for label in labels] for r in mine])
        start = np.array([_number(r["start_s"]) for r in mine])
        end = np.array([_number(r["end_s"]) for r in mine])
        order = np.argsort(end, kind="stable")
        speech = np.array([r.get("speech") == "1" for r in mine])
        emotion = [_text(r.get("emotion")) for r in mine]
        tracks[speaker] = Track(
            speaker,
            sources[speaker],
            start[order],
            end[order],
            speech[order],
            p[order].reshape(len(mine), len(labels)),
            [emotion[i] for i in order],
        )
    notes = [n for n in notes if n.at_s == n.at_s]  # rows without a time say nothing
    started = next((r.get("timestamp", "") for r in rows if r.get("timestamp")), "")
    return SessionRecord(path, labels, tracks, notes, started, load_cues(path))


def load_cues(log_path: Path) -> dict[str, dict[str, str]]:
    """The last whole-session cues row of each side in the cues CSV beside a session log
    (``listen`` and the app write it); empty where there is none or it is unreadable."""
    from ser_live.conversation import cues_path

    companion = cues_path(log_path)
    cues: dict[str, dict[str, str]] = {}
    try:
        with open(companion, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row.get("span") == "session" and row.get("side"):
                    cues[_text(row["side"])] = row
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    return cues


def cues_text(row: dict[str, str]) -> list[str]:
    """A side's session cues as short phrases, for the review window and the report."""

    def cell(name: str, text: str) -> str | None:
        value = row.get(name) or ""
        try:
            return text.format(float(value)) if value else None
        except ValueError:
            return None

    found = [
        cell("talk_share", "talk share {:.0%}"),
        cell("talk_s", "talk {:.0f} s"),
        cell("overlaps", "overlaps {:.0f}"),
        cell("interruptions", "interruptions {:.0f}"),
        cell("longest_silence_s", "longest silence {:.1f} s"),
        cell("pace_syll_per_s", "pace {:.1f} syl/s"),
        cell("pitch_hz", "pitch {:.0f} Hz"),
    ]
    return [f for f in found if f]


def peaks(track: Track, emotion: str, labels: list[str], count: int = 3) -> list[Peak]:
    """The ``count`` speech windows where ``emotion`` is most probable, at least
    ``PEAK_SEPARATION_S`` apart, strongest first."""
    if emotion not in labels:
        return []
    p = track.probabilities[:, labels.index(emotion)]
    candidates = [i for i in np.argsort(-np.nan_to_num(p, nan=-1.0)) if track.speech[i]]
    chosen: list[int] = []
    for i in candidates:
        if np.isnan(p[i]):
            continue
        if all(abs(track.end_s[i] - track.end_s[j]) >= PEAK_SEPARATION_S for j in chosen):
            chosen.append(int(i))
        if len(chosen) == count:
            break
    return [
        Peak(emotion, float(p[i]), float(track.start_s[i]), float(track.end_s[i])) for i in chosen
    ]


def emotion_shares(track: Track, labels: list[str]) -> dict[str, float]:
    """Each emotion's share of the side's speech windows (by their smoothed verdicts)."""
    verdicts = [e for e, s in zip(track.emotion, track.heard, strict=True) if s and e]
    return {label: verdicts.count(label) / max(1, len(verdicts)) for label in labels}


def summarise(record: SessionRecord, speaker: str) -> SideSummary:
    track = record.tracks[speaker]
    labels = record.labels
    speech = track.heard
    n_speech = int(speech.sum())
    shares = emotion_shares(track, labels)
    means = track.probabilities[speech].mean(axis=0) if n_speech else np.zeros(len(labels))
    return SideSummary(
        speaker=speaker,
        windows=len(track.end_s),
        speech_s=n_speech * track.hop_s,
        shares=shares,
        mean_probabilities={label: float(v) for label, v in zip(labels, means, strict=True)},
        peaks={e: peaks(track, e, labels) for e in PEAK_EMOTIONS if e in labels},
    )


def summarise_all(record: SessionRecord) -> list[SideSummary]:
    return [summarise(record, speaker) for speaker in record.tracks]


def dominant(summary: SideSummary) -> str:
    """The emotion with the largest share of a side's speech ("" without speech)."""
    if not any(summary.shares.values()):
        return ""
    return max(summary.shares, key=summary.shares.__getitem__)
