"""Conversation cues from each side's voice activity: talk, overlaps, interruptions,
silences, pace and voice. Plain NumPy; definitions in ``docs/cues.md``.

Threads: a ``SideActivity`` is fed by its side's engine on that side's worker thread
(``feed``) and read from any other (``snapshot``); a lock guards its arrays, and a
snapshot is a copy. ``conversation_cues`` is a pure function of snapshots; what it works
out once for a side's later snapshots too (turns' syllables, the sorted settled past)
holds only frames that no later feed changes.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field

import numpy as np

from ser_live import SAMPLE_RATE
from ser_live.features import DEFAULT_SETTINGS
from ser_live.vad import FRAME_MS, FRAME_SAMPLES

#: The VAD's grid, on which talk, overlaps and silences are measured.
FRAME_S = FRAME_MS / 1000.0
#: The level envelope's grid, on which syllable nuclei are found.
ENVELOPE_SAMPLES = SAMPLE_RATE // 100
ENVELOPE_S = ENVELOPE_SAMPLES / SAMPLE_RATE
#: Zero crossings per sample below which a 10 ms frame counts as voiced (vowels cross
#: zero rarely; fricatives and bursts, which make level peaks of their own, often).
VOICED_MAX_CROSSINGS = 0.2


@dataclass(frozen=True)
class CueSettings:
    #: The one who was speaking stops within this long after the other starts: an
    #: interruption.
    interruption_s: float = 1.0
    #: Both sides quiet for longer than this: a silence.
    silence_s: float = 3.0
    #: The rolling window of the live cues.
    rolling_s: float = 60.0
    #: A level peak is a syllable nucleus if the level dips at least this much on both
    #: sides of it before the next peak (de Jong & Wempe, 2009).
    nucleus_dip_db: float = 2.5
    #: ... and it lies within this much of the loudest speech of its turn.
    nucleus_floor_db: float = 20.0


@dataclass(frozen=True)
class Activity:
    """One side's voice activity: speech on the 30 ms VAD grid (the VAD's hangover taken
    off again, so a turn ends where its speech ends), and the 10 ms level envelope."""

    offset_s: float  # where the side's stream starts on the session clock
    speech: np.ndarray  # bool, one per 30 ms frame
    level_db: np.ndarray  # float32, one per 10 ms
    voiced: np.ndarray  # bool, one per 10 ms: few zero crossings, as in a vowel
    #: The engine's pitch track (YIN, semitones above 55 Hz), one per 10 ms; NaN where the
    #: engine computed none (windows without speech).
    pitch_st: np.ndarray | None = None
    #: Syllable nuclei counted per turn, (first, end) 10 ms frame -> count; shared by the
    #: snapshots of one side (see ``pace``).
    nuclei: dict = field(default_factory=dict, compare=False)
    #: Measures of spans already worked out on this snapshot (see ``_measured``): the
    #: whole session's median level and pitch are wanted once per rolling span.
    measured: dict = field(default_factory=dict, compare=False, repr=False)
    #: The side's settled past kept sorted, shared by its snapshots (see
    #: ``SettledSpeech``), and how many 10 ms frames of it this snapshot may use.
    settled: SettledSpeech | None = field(default=None, compare=False, repr=False)
    settled_until: int = 0

    @property
    def end_s(self) -> float:
        return self.offset_s + len(self.speech) * FRAME_S


class Growing:
    """An array that grows at its end, by doubling its storage (an hour of a side's
    activity is a few megabytes, in three arrays)."""

    def __init__(self, dtype) -> None:
        self._data = np.zeros(1024, dtype=dtype)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        need = self.size + len(values)
        if need > len(self._data):
            grown = np.zeros(max(need, 2 * len(self._data)), dtype=self._data.dtype)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size : need] = values
        self.size = need

    def write(self, start: int, values: np.ndarray) -> None:
        """Overwrite what is already there from ``start`` (what lies outside is dropped)."""
        first = max(0, start)
        last = min(self.size, start + len(values))
        if last > first:
            self._data[first:last] = values[first - start : last - start]

    def copy(self) -> np.ndarray:
        return self._data[: self.size].copy()

    def view(self) -> np.ndarray:
        """What is there now, without a copy: for an array only ever extended (``write``
        changes what a view shows), read-only."""
        view = self._data[: self.size]
        view.flags.writeable = False
        return view


class SettledSpeech:
    """The levels of a side's speech, and the pitches of its voiced speech, over the 10 ms
    frames that can no longer change, kept sorted: a whole session's medians, worked out
    every second, then cost the frames heard since the last time, not the session.

    Threads: ``SideActivity`` sets ``claimed`` under its lock when it takes a snapshot, and
    drops the whole object for a new one if a later write lands below it; ``catch_up``
    reads only the snapshot it is given (its own lock orders readers)."""

    def __init__(self) -> None:
        self.claimed = 0  # frames some snapshot may take in
        self.until = 0  # frames taken in
        self.levels = np.zeros(0, np.float32)
        self.pitches = np.zeros(0, np.float32)
        # The turns that ended in the settled past: where the last ended, their
        # syllable nuclei and their frames of speech.
        self.turns_until, self.turn_nuclei, self.turn_frames = 0, 0, 0
        self._lock = threading.Lock()

    def __reduce__(self):
        # A snapshot sent to another process (a batch's or a cluster's result) takes a
        # fresh one along, which works its past out again from the snapshot if asked.
        return SettledSpeech, ()

    def catch_up(self, activity: Activity) -> tuple[np.ndarray, np.ndarray, int] | None:
        """Take in the snapshot's settled frames not yet taken in, once there are
        ``TAKE_IN_S`` of them: the sorted levels and pitches taken in, and how many
        frames they cover; None if this object already holds more than the snapshot may
        use (an older snapshot)."""
        with self._lock:
            if self.until > activity.settled_until:
                return None
            first, last = self.until, activity.settled_until
            # Each take-in copies the sorted values: a minute at a time, not every poll,
            # or the heap is left with a megabyte an hour of ever larger holes.
            if (last - first) * ENVELOPE_S >= TAKE_IN_S:
                levels, speech, voiced = _speech_levels_at(activity, first, last)
                pitch = activity.pitch_st[first:last]
                voiced_speech = speech & voiced & ~np.isnan(pitch)
                self.levels = _merged(self.levels, levels[speech])
                self.pitches = _merged(self.pitches, pitch[voiced_speech])
                self.until = last
            return self.levels, self.pitches, self.until

    def turns(self, activity: Activity, settings: CueSettings) -> tuple[int, int, int] | None:
        """Take in the turns that ended in the snapshot's settled frames: where the last
        of them ended (the first frame to read from the snapshot), their nuclei and their
        frames of speech; None for an older snapshot."""
        with self._lock:
            if self.turns_until > activity.settled_until:
                return None
            first = self.turns_until
            speech = _speech_levels_at(activity, first, activity.settled_until)[1]
            starts, ends = runs(speech)
            ended = ends < len(speech)  # a turn that reaches the end may go on
            for start, end in zip(starts[ended], ends[ended], strict=True):
                self.turn_nuclei += turn_nuclei(activity, (first + start, first + end), settings)
            if ended.any():
                self.turns_until = first + int(ends[ended][-1])
                self.turn_frames += int(speech[: self.turns_until - first].sum())
            return self.turns_until, self.turn_nuclei, self.turn_frames


def _merged(sorted_values: np.ndarray, more: np.ndarray) -> np.ndarray:
    """``sorted_values`` with ``more`` inserted where they belong (a copy, in linear time)."""
    more = np.sort(more)
    return np.insert(sorted_values, np.searchsorted(sorted_values, more), more)


def _kth_of_both(a: np.ndarray, b: np.ndarray, landed: np.ndarray, k: int):
    """The ``k``-th smallest (from 0) of two sorted arrays taken together, ``landed``
    being where each of b's values lands in the merged order (``_landed``)."""
    before = int(np.searchsorted(landed, k))  # b's values before position k
    if before < len(b) and landed[before] == k:
        return b[before]
    return a[k - before]


def _landed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Where each of b's values lands when two sorted arrays are merged (after a's equal
    values): strictly increasing."""
    return np.searchsorted(a, b, side="right") + np.arange(len(b))


def _median_of_both(a: np.ndarray, b: np.ndarray) -> float | None:
    """``np.median`` of a sorted array and another taken together (the same arithmetic)."""
    n = len(a) + len(b)
    if n == 0:
        return None
    if len(a) == 0:
        return float(np.median(b))
    b = np.sort(b)
    landed = _landed(a, b)
    middle = [n // 2] if n % 2 else [n // 2 - 1, n // 2]
    return float(np.median(np.array([_kth_of_both(a, b, landed, k) for k in middle], a.dtype)))


#: Frames this close to the end of what was heard are not settled yet: the engine writes
#: a window's pitch when the window completes, up to its 2 s behind the end.
UNSETTLED_S = 5.0
#: The settled past takes in new frames once it has this many seconds of them.
TAKE_IN_S = 60.0


class SideActivity:
    """A side's voice activity as its engine hears it (see the module's thread rules)."""

    def __init__(self, hangover_frames: int, offset_s: float = 0.0) -> None:
        self.hangover_frames = hangover_frames
        self._lock = threading.Lock()
        self.reset(offset_s)

    def reset(self, offset_s: float = 0.0) -> None:
        """Start afresh, at ``offset_s`` on the session clock."""
        with self._lock:
            self.offset_s = offset_s
            self._speech = Growing(bool)
            self._levels = Growing(np.float32)
            self._voiced = Growing(bool)
            self._pitch = Growing(np.float32)
            self._carry = np.zeros(0, dtype=np.float32)
            self._nuclei: dict = {}
            self._settled = SettledSpeech()

    def feed(self, samples: np.ndarray, decisions: np.ndarray) -> None:
        """The VAD's decisions for a block of 16 kHz samples, and the samples."""
        samples = np.concatenate([self._carry, np.asarray(samples, np.float32)])
        whole = len(samples) // ENVELOPE_SAMPLES * ENVELOPE_SAMPLES
        frames = samples[:whole].reshape(-1, ENVELOPE_SAMPLES).astype(np.float64)
        level = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        crossings = np.mean(np.diff(np.signbit(frames), axis=1), axis=1)
        with self._lock:
            self._carry = samples[whole:]
            self._speech.extend(np.asarray(decisions, dtype=bool))
            self._levels.extend(level)
            self._voiced.extend(crossings < VOICED_MAX_CROSSINGS)
            self._pitch.extend(np.full(len(level), np.nan, np.float32))

    def add_pitch(self, ago_s: float, semitones: np.ndarray) -> None:
        """The engine's pitch of 10 ms frames, the first of which starts ``ago_s`` before
        the end of what was fed."""
        with self._lock:
            start = self._pitch.size - round(ago_s / ENVELOPE_S)
            self._pitch.write(start, np.asarray(semitones, np.float32))
            if max(0, start) < self._settled.claimed:  # not settled after all: start again
                self._settled = SettledSpeech()

    @property
    def end_s(self) -> float:
        """Where what was heard ends on the session clock."""
        return self.offset_s + self._speech.size * FRAME_S

    def continue_at(self, at_s: float) -> None:
        """Carry on at ``at_s`` on the session clock (a side resumed or brought back
        later): the time in between is silence."""
        gap = round((at_s - self.end_s) / FRAME_S)
        if gap > 0:
            with self._lock:
                self._speech.extend(np.zeros(gap, bool))
                per_frame = FRAME_SAMPLES // ENVELOPE_SAMPLES
                self._levels.extend(np.full(gap * per_frame, -120.0, np.float32))
                self._voiced.extend(np.zeros(gap * per_frame, bool))
                self._pitch.extend(np.full(gap * per_frame, np.nan, np.float32))

    def snapshot(self) -> Activity:
        per_frame = FRAME_SAMPLES // ENVELOPE_SAMPLES
        with self._lock:
            # Speech, level and voicing are only ever extended: a view is a snapshot of
            # them. A window's pitch is written behind the end: it is copied.
            speech, levels, voiced = self._speech.view(), self._levels.view(), self._voiced.view()
            pitch, offset, nuclei = self._pitch.copy(), self.offset_s, self._nuclei
            # A run of speech still going may lose its last hangover frames (see
            # without_hangover); nothing before them changes, but for a late pitch.
            settled_until = max(
                0,
                min(len(levels), (len(speech) - self.hangover_frames) * per_frame)
                - round(UNSETTLED_S / ENVELOPE_S),
            )
            settled = self._settled
            settled.claimed = max(settled.claimed, settled_until)
        speech = without_hangover(speech, self.hangover_frames)
        return Activity(
            offset,
            speech,
            levels,
            voiced,
            pitch,
            nuclei,
            settled=settled,
            settled_until=settled_until,
        )


def without_hangover(speech: np.ndarray, hangover_frames: int) -> np.ndarray:
    """The VAD keeps every run of speech on for ``hangover_frames`` after its last voiced
    frame; take those frames off again (a run still going at the end too: they may be
    hangover, and the next block will tell)."""
    out = speech.copy()
    if hangover_frames <= 0:
        return out
    starts, ends = runs(speech)
    # Each run's last hangover_frames frames (no more than the run) go: a cumulative sum
    # of +1 where such a tail starts and -1 where it ends marks them all at once.
    tails = np.zeros(len(speech) + 1, np.int64)
    np.add.at(tails, np.maximum(starts, ends - hangover_frames), 1)
    np.add.at(tails, ends, -1)
    out[np.cumsum(tails[:-1]) > 0] = False
    return out


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends (exclusive) of the runs of True in a boolean array."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return edges[0::2], edges[1::2]


@dataclass(frozen=True)
class SideCues:
    talk_s: float
    talk_share: float | None  # of all sides' talk; None when nobody spoke
    overlap_s: float  # this side speaking while another does
    overlaps: int
    interruptions: int  # this side started while another spoke, who stopped within 1 s
    silences: int  # everyone quiet longer than the setting (counted for every side alike)
    longest_silence_s: float
    pace_syll_per_s: float | None  # syllable nuclei per second of this side's speech
    level_dbfs: float | None  # the median level of this side's speech
    loudness_db: float | None  # a rolling span's speech level against the whole session
    pitch_hz: float | None  # the median pitch of this side's voiced speech
    pitch_st: float | None  # a rolling span's pitch against the whole session, semitones

    def as_row(self) -> dict[str, str]:
        def fmt(value, digits=2):
            return "" if value is None else f"{value:.{digits}f}"

        return {
            "talk_s": fmt(self.talk_s),
            "talk_share": fmt(self.talk_share, 3),
            "overlap_s": fmt(self.overlap_s),
            "overlaps": str(self.overlaps),
            "interruptions": str(self.interruptions),
            "silences": str(self.silences),
            "longest_silence_s": fmt(self.longest_silence_s),
            "pace_syll_per_s": fmt(self.pace_syll_per_s),
            "level_dbfs": fmt(self.level_dbfs, 1),
            "loudness_db": fmt(self.loudness_db, 1),
            "pitch_hz": fmt(self.pitch_hz, 0),
            "pitch_st": fmt(self.pitch_st, 1),
        }


CUE_COLUMNS = list(SideCues.__dataclass_fields__)


def on_session_grid(
    activities: dict[str, Activity], last_s: float | None = None
) -> tuple[float, int, dict[str, np.ndarray]]:
    """Every side's speech on one 30 ms grid from the earliest start to the latest end,
    or only its last ``last_s`` seconds (a rolling span costs the span, not the session):
    (the grid's start on the session clock, the grid's frame the arrays start at, side ->
    bool array)."""
    start, n, starts = _grid_frames(activities)
    first = 0 if last_s is None else max(0, n - round(last_s / FRAME_S))
    grid = {}
    for side, a in activities.items():
        at = starts[side]
        lo = max(first, at)
        piece = a.speech[lo - at : max(lo - at, n - at)]
        mask = np.zeros(n - first, bool)
        mask[lo - first : lo - first + len(piece)] = piece
        grid[side] = mask
    return start, first, grid


def _grid_frames(activities: dict[str, Activity]) -> tuple[float, int, dict[str, int]]:
    """The session's 30 ms grid: its start on the session clock, its length in frames, and
    the frame each side starts at."""
    start = min(a.offset_s for a in activities.values())
    n = round((max(a.end_s for a in activities.values()) - start) / FRAME_S)
    return start, n, {side: round((a.offset_s - start) / FRAME_S) for side, a in activities.items()}


def conversation_cues(
    activities: dict[str, Activity],
    settings: CueSettings | None = None,
    last_s: float | None = None,
    voice: bool = True,
) -> dict[str, SideCues]:
    """The cues of each side over the whole session, or over its ``last_s`` seconds;
    without ``voice``, only those of who spoke when (pace, level and pitch left None:
    what the alert rules need, at a fraction of the cost)."""
    settings = settings or CueSettings()
    if not activities:
        return {}
    grid_start, first, grid = on_session_grid(activities, last_s)
    n = first + len(next(iter(grid.values())))
    total = sum(int(mask.sum()) for mask in grid.values())
    anyone = np.logical_or.reduce(list(grid.values()))
    silences = long_silences(anyone, settings.silence_s)
    out = {}
    for side, mask in grid.items():
        others = np.logical_or.reduce(
            [m for s, m in grid.items() if s != side] or [np.zeros_like(mask)]
        )
        both = mask & others
        talk = int(mask.sum())
        span_s = (grid_start + first * FRAME_S, grid_start + n * FRAME_S)
        a = activities[side] if voice else None
        out[side] = SideCues(
            talk_s=talk * FRAME_S,
            talk_share=talk / total if total else None,
            overlap_s=float(both.sum()) * FRAME_S,
            overlaps=len(runs(both)[0]),
            interruptions=interruptions(mask, others, settings.interruption_s),
            silences=len(silences),
            longest_silence_s=max(silences, default=0.0),
            pace_syll_per_s=None if a is None else pace(a, span_s, settings),
            level_dbfs=None if a is None else median_level(a, span_s),
            loudness_db=None if a is None or last_s is None else loudness(a, span_s),
            pitch_hz=None if a is None else _hz(median_pitch(a, span_s)),
            pitch_st=None if a is None or last_s is None else pitch_shift(a, span_s),
        )
    return out


def interruptions(mine: np.ndarray, others: np.ndarray, within_s: float) -> int:
    """Turns this side started while another side was already speaking, where that other
    speech stopped within ``within_s`` of the start while this side spoke on."""
    within = round(within_s / FRAME_S)
    starts, ends = runs(mine)
    # Someone to interrupt: the other was speaking already (not starting together).
    over = (starts > 0) & others[starts] & others[np.maximum(starts - 1, 0)]
    starts, ends = starts[over], ends[over]
    other_ends = runs(others)[1]
    stops = other_ends[np.searchsorted(other_ends, starts, side="right")]
    return int(np.sum((stops < len(others)) & (stops - starts <= within) & (ends >= stops)))


def long_silences(anyone: np.ndarray, silence_s: float) -> list[float]:
    """Gaps longer than ``silence_s`` in which nobody spoke, between the first speech
    and the last (the quiet before a call starts and after it ends is not a silence)."""
    starts, ends = runs(~anyone)
    lengths_s = (ends - starts).astype(np.float64) * FRAME_S
    inside = (starts > 0) & (ends < len(anyone)) & (lengths_s > silence_s)
    return [float(length) for length in lengths_s[inside]]


def current_silence_s(activities: dict[str, Activity]) -> float:
    """How long everyone has been quiet, up to the end of what was heard (0 while someone
    speaks or before anyone spoke)."""
    if not activities:
        return 0.0
    _, n, starts = _grid_frames(activities)
    last = -1  # the session grid's last frame of speech
    for side, a in activities.items():
        at = starts[side]
        spoken = _last_true(a.speech[: max(0, n - at)])
        if spoken is not None:
            last = max(last, at + spoken)
    return 0.0 if last < 0 else (n - 1 - last) * FRAME_S


def _last_true(mask: np.ndarray) -> int | None:
    """The index of the last True, looked for from the end (a silence is short beside a
    session)."""
    size = 1024
    while True:
        lo = max(0, len(mask) - size)
        hits = np.flatnonzero(mask[lo:])
        if len(hits):
            return lo + int(hits[-1])
        if lo == 0:
            return None
        size *= 8


def _heard_frames(activity: Activity) -> int:
    """How many 10 ms frames of the side were heard (with a VAD decision)."""
    per_frame = FRAME_SAMPLES // ENVELOPE_SAMPLES
    return min(len(activity.speech) * per_frame, len(activity.level_db))


def _span_frames(activity: Activity, span_s: tuple[float, float]) -> tuple[int, int]:
    """The 10 ms frames of the side that ``span_s`` covers: (first, end)."""
    heard = _heard_frames(activity)
    first = min(heard, max(0, round((span_s[0] - activity.offset_s) / ENVELOPE_S)))
    last = min(heard, max(first, round((span_s[1] - activity.offset_s) / ENVELOPE_S)))
    return first, last


def _speech_levels_at(
    activity: Activity, first: int, last: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The side's 10 ms levels from frame ``first`` to ``last``, whether each is in
    speech, and voiced."""
    per_frame = FRAME_SAMPLES // ENVELOPE_SAMPLES
    # Only the span's VAD frames are spread onto the 10 ms grid: a rolling span's cues
    # cost the span, not the session.
    frame_first, frame_last = first // per_frame, -(-last // per_frame)
    speech = np.repeat(activity.speech[frame_first:frame_last], per_frame)
    speech = speech[first - frame_first * per_frame :][: last - first]
    return activity.level_db[first:last], speech, activity.voiced[first:last]


def pace(activity: Activity, span_s: tuple[float, float], settings: CueSettings) -> float | None:
    """Syllables per second of speech: the level envelope's peaks within each turn that
    stand out by ``nucleus_dip_db`` from the dips around them and lie within
    ``nucleus_floor_db`` of the turn's loudest level; None with under a second of speech.
    A whole turn's count is kept (``Activity.nuclei``): a live call's cues, worked out
    every second over the whole session, count each turn once; and the whole session's
    settled turns are summed once (``SettledSpeech.turns``)."""
    first, last = _span_frames(activity, span_s)
    nuclei, speech_frames = 0, 0
    if activity.settled is not None and first == 0:
        counted = activity.settled.turns(activity, settings)
        if counted is not None:
            first, nuclei, speech_frames = counted
    speech = _speech_levels_at(activity, first, last)[1]
    speech_frames += int(speech.sum())
    if speech_frames * ENVELOPE_S < 1.0:
        return None
    for start, end in zip(*runs(speech), strict=True):
        nuclei += turn_nuclei(activity, (first + start, first + end), settings)
    return float(nuclei / (speech_frames * ENVELOPE_S))


def turn_nuclei(activity: Activity, turn: tuple[int, int], settings: CueSettings) -> int:
    """The syllable nuclei of a turn (its first and end 10 ms frame), counted once."""
    if turn not in activity.nuclei:
        # A turn cut by the span's edge may be counted again with other edges.
        lo, hi = max(0, turn[0] - 2), turn[1] + 2  # the 50 ms smoothing's context
        smooth = np.convolve(activity.level_db[lo:hi], np.ones(5) / 5, mode="same")
        # A peak is voiced if a frame within 20 ms of it is: a bright or strained
        # voice crosses zero often in some frames of a vowel.
        near = np.convolve(activity.voiced[lo:hi], np.ones(5), mode="same") > 0
        inside = slice(turn[0] - lo, turn[1] - lo)
        activity.nuclei[turn] = count_nuclei(smooth[inside], near[inside], settings)
    return activity.nuclei[turn]


def count_nuclei(level_db: np.ndarray, voiced: np.ndarray, settings: CueSettings) -> int:
    """Voiced peaks of a turn's level envelope separated by dips of ``nucleus_dip_db``."""
    if len(level_db) < 3:
        return 0
    floor = level_db.max() - settings.nucleus_floor_db
    count, peak, at, dip, rising = 0, -np.inf, 0, np.inf, True
    for i, value in enumerate(level_db):
        if rising:
            if value > peak:
                peak, at = value, i
            elif value < peak - settings.nucleus_dip_db:
                count += bool(peak >= floor and voiced[at])
                rising, dip = False, value
        else:
            dip = min(dip, value)
            if value > dip + settings.nucleus_dip_db:
                rising, peak, at = True, value, i
    if rising and peak >= floor and voiced[at]:
        count += dip == np.inf or peak > dip + settings.nucleus_dip_db
    return count


#: No values (the settled past where there is none to use).
NO_VALUES = np.zeros(0, np.float32)


def _settled_past(
    activity: Activity, span_s: tuple[float, float]
) -> tuple[tuple[np.ndarray, np.ndarray] | None, int, int]:
    """The sorted levels and pitches of the settled frames ``span_s`` starts with, where
    it starts with the side's first frame, and the frames still to read from the
    snapshot itself (first, end)."""
    first, last = _span_frames(activity, span_s)
    if activity.settled is None or first > 0 or last < activity.settled_until:
        return None, first, last
    past = activity.settled.catch_up(activity)
    return (None, first, last) if past is None else (past[:2], past[2], last)


def _measured(measure):
    """``measure(activity, span_s)`` worked out once per snapshot and span."""

    @functools.wraps(measure)
    def once(activity: Activity, span_s: tuple[float, float]) -> float | None:
        key = (measure.__name__, span_s)
        if key not in activity.measured:
            activity.measured[key] = measure(activity, span_s)
        return activity.measured[key]

    return once


@_measured
def median_level(activity: Activity, span_s: tuple[float, float]) -> float | None:
    """The median level of the side's speech within ``span_s``, dBFS."""
    past, first, last = _settled_past(activity, span_s)
    levels, speech, _ = _speech_levels_at(activity, first, last)
    return _median_of_both(past[0] if past else NO_VALUES, levels[speech])


def loudness(activity: Activity, span_s: tuple[float, float]) -> float | None:
    """The median speech level within ``span_s`` against the side's whole session, dB."""
    return _against_session(median_level, activity, span_s)


def _against_session(measure, activity: Activity, span_s: tuple[float, float]) -> float | None:
    """``measure`` of ``span_s`` minus ``measure`` of the side's whole session."""
    now = measure(activity, span_s)
    usual = measure(activity, (activity.offset_s, activity.end_s))
    return None if now is None or usual is None else now - usual


#: Under this much voiced speech with a pitch, a span has no pitch cue.
MIN_PITCH_S = 1.0


@_measured
def median_pitch(activity: Activity, span_s: tuple[float, float]) -> float | None:
    """The median pitch of the side's voiced speech within ``span_s``, in semitones above
    55 Hz; None with under ``MIN_PITCH_S`` of it."""
    if activity.pitch_st is None:
        return None
    past, first, last = _settled_past(activity, span_s)
    _, speech, voiced = _speech_levels_at(activity, first, last)
    pitch = activity.pitch_st[first:last]
    n = min(len(pitch), len(speech))
    tail = pitch[:n][speech[:n] & voiced[:n] & ~np.isnan(pitch[:n])]
    settled = past[1] if past else NO_VALUES
    if (len(settled) + len(tail)) * ENVELOPE_S < MIN_PITCH_S:
        return None
    return _median_of_both(settled, tail)


def pitch_shift(activity: Activity, span_s: tuple[float, float]) -> float | None:
    """The median pitch within ``span_s`` against the side's whole session, semitones."""
    return _against_session(median_pitch, activity, span_s)


def _hz(semitones: float | None) -> float | None:
    return None if semitones is None else DEFAULT_SETTINGS.f0_ref_hz * 2.0 ** (semitones / 12.0)
