"""The streaming engine: 16 kHz audio in, one timestamped ``Update`` per window out.

Plain Python/NumPy, no threads of its own: whoever calls ``feed`` owns the engine (the
session's worker thread live, the caller's thread for files).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from ser_live import SAMPLE_RATE
from ser_live.features import DEFAULT_SETTINGS
from ser_live.features import warm_up as warm_up_features
from ser_live.frontend import FrontEnd, Window
from ser_live.model import Classifier
from ser_live.vad import VoiceActivityDetector
from ser_live.voice_shifts import StreamTail, VoiceShifter


@dataclass(frozen=True)
class Update:
    """What the engine says about one window of the stream."""

    start_s: float  # stream time of the window
    end_s: float
    speech: bool  # enough speech in the window to say anything
    speech_ratio: float
    level_db: float
    probabilities: np.ndarray | None  # smoothed over recent speech windows; None in silence
    raw_probabilities: np.ndarray | None  # this window alone
    emotion: str | None
    confidence: float | None
    wall_time: float  # time.time() when the update was made
    compute_ms: float  # features + inference for this window


class Smoother:
    """Mean of the last ``n`` speech windows' probabilities; silence starts afresh.

    A pause long enough to make a silence window usually ends a phrase, and the next phrase
    should not inherit the last one's emotion.
    """

    def __init__(self, n: int = 3) -> None:
        if n < 1:
            raise ValueError("smoothing must be at least 1 window")
        self.n = n
        self._recent: deque[np.ndarray] = deque(maxlen=n)

    def reset(self) -> None:
        self._recent.clear()

    def __call__(self, probabilities: np.ndarray | None) -> np.ndarray | None:
        if probabilities is None:
            self._recent.clear()
            return None
        self._recent.append(probabilities)
        return np.mean(self._recent, axis=0).astype(np.float32)


class Engine:
    def __init__(
        self,
        classifier: Classifier,
        smoothing: int = 3,
        vad_aggressiveness: int | None = None,
        min_speech_ratio: float | None = None,
        voice_shifts: bool = True,
    ) -> None:
        """``voice_shifts=False`` skips the sidecar's test-time voice shifts: about a tenth
        of the work per speech window, for the accuracy the model card gives without."""
        spec = classifier.spec
        self.classifier = classifier
        self.labels: list[str] = list(spec.labels)
        vad_cfg = spec.vad
        self.vad = VoiceActivityDetector(
            vad_cfg["aggressiveness"] if vad_aggressiveness is None else vad_aggressiveness,
            vad_cfg["hangover_frames"],
            vad_cfg["min_level_db"],
        )
        self.frontend = FrontEnd(spec.window_s, spec.hop_s, DEFAULT_SETTINGS, self.vad)
        self.min_speech_ratio = (
            spec.min_speech_ratio if min_speech_ratio is None else min_speech_ratio
        )
        self.smoother = Smoother(smoothing)
        self.shifter = (
            VoiceShifter(spec.voice_shifts, self.frontend.window_samples, DEFAULT_SETTINGS)
            if voice_shifts and spec.voice_shifts
            else None
        )
        self._tail = StreamTail()  # audio for the shifted copies
        self._waiting: deque[Window] = deque()  # the first window, until its copies can be cut

    @property
    def window_s(self) -> float:
        return self.frontend.window_s

    @property
    def hop_s(self) -> float:
        return self.frontend.hop_s

    @property
    def stream_s(self) -> float:
        """Seconds of audio fed since reset."""
        return self.frontend.total_samples / SAMPLE_RATE

    @property
    def speech_s(self) -> float:
        return self.frontend.speech_s

    def warm_up(self) -> None:
        """Pay one-off costs now (librosa's numba compile, the interpreter's first run).

        Call it before opening a device, and off the UI thread: cold, it takes seconds.
        """
        warm_up_features(self.frontend.settings)
        self.classifier.warm_up()

    def set_smoothing(self, n: int) -> None:
        self.smoother = Smoother(n)

    def set_vad_aggressiveness(self, level: int) -> None:
        self.vad.set_aggressiveness(level)

    def reset(self) -> None:
        self.frontend.reset()
        self.smoother.reset()
        self._tail.reset()
        self._waiting.clear()

    def feed(self, samples: np.ndarray) -> list[Update]:
        """Add 16 kHz mono float32 samples; return the updates of the windows they complete."""
        if self.shifter is None:
            return [self._classify(window) for window in self.frontend.feed(samples)]
        self._tail.feed(samples)
        self._waiting.extend(self.frontend.feed(samples))
        updates = self._classify_waiting(finishing=False)
        # Keep what the next windows' copies (and any window still waiting) are cut from.
        keep_from = self._tail.end - self.shifter.context_samples
        if self._waiting:
            keep_from = min(keep_from, round(self._waiting[0].start_s * SAMPLE_RATE))
        self._tail.forget_before(keep_from)
        return updates

    def finish(self) -> list[Update]:
        """The end of the stream: the updates of windows still waiting for audio (at most
        the first, in a stream that ended within a quarter second of it)."""
        return self._classify_waiting(finishing=True) if self.shifter is not None else []

    def _classify_waiting(self, finishing: bool) -> list[Update]:
        updates = []
        while self._waiting:
            start = round(self._waiting[0].start_s * SAMPLE_RATE)
            if not (finishing or self.shifter.ready(start, self._tail.end)):
                break
            updates.append(self._classify(self._waiting.popleft()))
        return updates

    def _probabilities(self, window: Window) -> np.ndarray:
        """The model's output for the window, averaged over its voice-shifted copies."""
        probs = self.classifier.predict(window.features)
        if self.shifter is None:
            return probs
        start = round(window.start_s * SAMPLE_RATE)
        reach = self.shifter.context_samples
        first = max(0, start + self.shifter.window_samples - reach, self._tail.first)
        last = min(self._tail.end, start + reach)  # reach is at least a window
        copies = self.shifter(self._tail.span(first, last), start - first)
        return np.mean([probs, *map(self.classifier.predict, copies)], axis=0, dtype=np.float32)

    def _classify(self, window: Window) -> Update:
        t0 = time.perf_counter()
        speech = window.speech_ratio >= self.min_speech_ratio
        raw = self._probabilities(window) if speech else None
        smoothed = self.smoother(raw)
        if smoothed is None:
            emotion, confidence = None, None
        else:
            best = int(np.argmax(smoothed))
            emotion, confidence = self.labels[best], float(smoothed[best])
        return Update(
            start_s=window.start_s,
            end_s=window.end_s,
            speech=speech,
            speech_ratio=window.speech_ratio,
            level_db=window.level_db,
            probabilities=smoothed,
            raw_probabilities=raw,
            emotion=emotion,
            confidence=confidence,
            wall_time=time.time(),
            compute_ms=(time.perf_counter() - t0) * 1000.0,
        )
