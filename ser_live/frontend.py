"""Sliding windows over a 16 kHz stream: VAD decisions, features and level per window.

The live engine and ``training/`` both take their windows from here, so the model is
trained on exactly the kind of input it sees live. Windows start every ``hop_s`` seconds
from the start of the stream; a window's features are computed only when the window is
complete, and only for the frames no earlier window computed. Which frames are computed
together therefore depends on the window schedule alone, never on how the caller chunks
the stream: the same audio gives bit-identical windows whatever the chunk size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ser_live import SAMPLE_RATE
from ser_live.features import DEFAULT_SETTINGS, FeatureSettings, frame_features, normalise_window
from ser_live.utterance import PhraseStats, WindowFrames
from ser_live.vad import FRAME_SAMPLES, VoiceActivityDetector


@dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float
    speech_ratio: float  # fraction of the window's VAD frames that are speech
    level_db: float  # RMS level of the window, dBFS
    # (n_frames, n_features), per-window normalised; None for a window without speech
    # unless the front end was asked for them (``silence_features``)
    features: np.ndarray | None
    padded: bool = False  # a stream shorter than a window, centred in room tone
    # Statistics of the window's frames before the per-window normalisation, for the
    # utterance head; None where ``features`` is None or not asked for (``frame_stats``)
    frames: WindowFrames | None = None


#: Level of the room tone a short stream is padded with: faint white noise, as from any
#: microphone (training pads short clips with the same).
ROOM_TONE_DBFS = -75.0


def room_tone(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of faint white noise, the floor of any microphone."""
    return rng.standard_normal(n).astype(np.float32) * np.float32(10 ** (ROOM_TONE_DBFS / 20))


def level_db(samples: np.ndarray) -> float:
    """RMS level in dBFS (floored at -100)."""
    power = float(np.mean(samples.astype(np.float64) ** 2))
    return 10.0 * np.log10(max(power, 1e-10))


class FrontEnd:
    """Turns an audio stream into a sequence of ``Window`` objects."""

    def __init__(
        self,
        window_s: float,
        hop_s: float,
        settings: FeatureSettings = DEFAULT_SETTINGS,
        vad: VoiceActivityDetector | None = None,
        silence_features: bool = False,
        frame_stats: bool = False,
    ) -> None:
        """``silence_features``: compute features for windows without speech too (the
        engine never classifies them, so by default they are skipped); ``frame_stats``:
        give windows with features their ``frames`` statistics too (the utterance head's
        input; by default skipped, as their cost is wasted without the head)."""
        self.settings = settings
        self.silence_features = silence_features
        self.frame_stats = frame_stats
        self.window_samples = round(window_s * SAMPLE_RATE)
        self.hop_samples = round(hop_s * SAMPLE_RATE)
        if self.hop_samples % settings.hop_length:
            raise ValueError("the window hop must be a whole number of feature frames")
        if self.window_samples < settings.frame_length or self.hop_samples <= 0:
            raise ValueError("window too short or hop not positive")
        self.frames_per_window = settings.frames_in(self.window_samples)
        self.vad = vad or VoiceActivityDetector()
        self.reset()

    def reset(self) -> None:
        self.vad.reset()
        self.total_samples = 0
        self._next_start = 0  # first sample of the next window
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_start = 0  # absolute index of self._audio[0]
        self._frames = np.zeros((0, self.settings.n_features), dtype=np.float32)
        self._frames_start = 0  # absolute frame index of self._frames[0]
        self._vad = np.zeros(0, dtype=bool)
        self._vad_start = 0  # absolute VAD-frame index of self._vad[0]
        self.speech_frames = 0  # VAD frames marked speech since reset
        self._padded = False  # pad_short_stream has given its window

    @property
    def window_s(self) -> float:
        return self.window_samples / SAMPLE_RATE

    @property
    def hop_s(self) -> float:
        return self.hop_samples / SAMPLE_RATE

    @property
    def speech_s(self) -> float:
        """Seconds of speech the VAD has heard since reset."""
        return self.speech_frames * FRAME_SAMPLES / SAMPLE_RATE

    def feed(self, samples: np.ndarray) -> list[Window]:
        """Add 16 kHz mono samples; return the windows they complete, oldest first."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        decisions = self.vad.process(samples)
        self.decisions = decisions  # this block's, for the conversation cues
        self.speech_frames += int(decisions.sum())
        self._vad = np.concatenate([self._vad, decisions])
        self._audio = np.concatenate([self._audio, samples])
        self.total_samples += len(samples)
        starts = []
        while self._next_start + self.window_samples <= self.total_samples:
            starts.append(self._next_start)
            self._next_start += self.hop_samples
        if not starts:
            return []
        ratios = [self._speech_ratio(start) for start in starts]
        wanted = [ratio > 0 or self.silence_features for ratio in ratios]
        needed = [start for start, want in zip(starts, wanted, strict=True) if want]
        if needed:
            # The frames of every window that needs them in one call: many frames at once
            # cost far less per frame, and each frame's numbers do not depend on its company.
            hop = self.settings.hop_length
            self._compute_frames(needed[0] // hop, needed[-1] // hop + self.frames_per_window)
        windows = [
            self._make_window(start, ratio, want)
            for start, ratio, want in zip(starts, ratios, wanted, strict=True)
        ]
        self._trim()
        return windows

    def _compute_frames(self, first_frame: int, end_frame: int) -> None:
        """Have the frame cache hold absolute frames ``first_frame`` to ``end_frame``
        (exclusive), computing only those it lacks."""
        s = self.settings
        have = self._frames_start + len(self._frames)
        if have >= end_frame:
            return
        begin = max(have, first_frame)
        lo = begin * s.hop_length - self._audio_start
        hi = (end_frame - 1) * s.hop_length + s.frame_length - self._audio_start
        new = frame_features(self._audio[lo:hi], s)
        if have < begin:  # a gap: nothing before it is needed
            self._frames, self._frames_start = new, begin
        else:
            self._frames = np.concatenate([self._frames, new])

    def pad_short_stream(self) -> Window | None:
        """For a stream that ended before its first window: one window with the whole
        stream in its middle and room tone around it (None for an empty or longer stream).

        Training pads its short clips the same way, so a 0.4 s word is a window the model
        knows. The window's times are the stream's own span.
        """
        if self._next_start > 0 or self.total_samples == 0 or self._padded:
            return None
        self._padded = True
        audio = self._audio[: self.total_samples]
        rng = np.random.default_rng(len(audio))  # the same padding for the same stream
        padded = room_tone(self.window_samples, rng)
        lead = (self.window_samples - len(audio)) // 2
        padded[lead : lead + len(audio)] += audio
        speech_ratio = float(self.vad.fresh().process(padded).mean())
        frames = frame_features(padded, self.settings)
        whole = PhraseStats.of(frames) if self.frame_stats else None
        return Window(
            0.0,
            len(audio) / SAMPLE_RATE,
            speech_ratio,
            level_db(audio),
            normalise_window(frames, self.settings),
            padded=True,
            frames=None if whole is None else WindowFrames(0.0, whole, whole),
        )

    def _speech_ratio(self, start: int) -> float:
        """Fraction of the VAD frames wholly inside the window that are speech."""
        v0 = -(-start // FRAME_SAMPLES) - self._vad_start
        v1 = (start + self.window_samples) // FRAME_SAMPLES - self._vad_start
        return float(self._vad[v0:v1].mean()) if v1 > v0 else 0.0

    def _make_window(self, start: int, speech_ratio: float, with_features: bool) -> Window:
        s = self.settings
        end = start + self.window_samples
        feats = heard = None
        if with_features:
            i0 = start // s.hop_length - self._frames_start
            frames = self._frames[i0 : i0 + self.frames_per_window]
            feats = normalise_window(frames, s)
        if with_features and self.frame_stats:
            newest_from = len(frames) - self.hop_samples // s.hop_length
            heard = WindowFrames(
                start / SAMPLE_RATE,
                PhraseStats.of(frames),
                PhraseStats.of(frames, steps_from=newest_from),
            )
        level = level_db(self._audio[start - self._audio_start : end - self._audio_start])
        return Window(
            start / SAMPLE_RATE, end / SAMPLE_RATE, speech_ratio, level, feats, frames=heard
        )

    def _trim(self) -> None:
        """Forget what no future window needs, so memory stays flat in long sessions."""
        start = self._next_start
        drop = start - self._audio_start
        if drop > 0:
            self._audio = self._audio[drop:]
            self._audio_start = start
        first_frame = start // self.settings.hop_length
        drop = min(first_frame - self._frames_start, len(self._frames))
        if drop > 0:
            self._frames = self._frames[drop:]
            self._frames_start += drop
        first_vad = start // FRAME_SAMPLES
        drop = min(first_vad - self._vad_start, len(self._vad))
        if drop > 0:
            self._vad = self._vad[drop:]
            self._vad_start += drop
