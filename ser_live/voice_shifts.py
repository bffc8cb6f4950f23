"""Test-time voice shifts: each window heard again a little higher and a little lower.

A new speaker's voice sits higher or lower than the voices the model learnt from, and the
model's output moves with it. Averaging its probabilities over the window as heard and as
replayed 1 and 2 semitones higher and lower (resampled like a tape played faster or slower,
so pitch and formants move together) makes the answer depend less on where this one
voice sits. On held-out speakers it raised RAVDESS UAR and the held-out TESS voice's UAR
alike (see the model card); the model's sidecar lists the shifts it was scored with.

A copy is cut so that it ends where its window ends: one played faster needs up to 12%
more audio from before the window, which the stream has already given, and none needs
audio after it, so the shifts add no latency. Only the first window of a stream has
nothing before it: its faster copies start where it starts instead, which makes it wait
up to a quarter of a second for the audio after it. A copy that cannot be cut either way
(a stream that ends that soon) is left out, and so is its mirror image (the copy shifted
as far the other way), so that the copies never lean the average up or down. The live
engine and ``training/`` both cut their copies here, so cross-validation scores what the
engine computes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import soxr

from ser_live import SAMPLE_RATE
from ser_live.features import DEFAULT_SETTINGS, FeatureSettings, frame_features, normalise_window

#: The largest shift the runtime accepts, in semitones either way. Training augments
#: pitch by up to 3 semitones: beyond that the copies are voices the model never heard.
MAX_SHIFT_SEMITONES = 3.0


def shifts_problem(semitones) -> str | None:
    """Why ``semitones`` is not a usable list of shifts, or None if it is."""
    if isinstance(semitones, list | tuple) and all(
        isinstance(s, int | float) and s != 0 and abs(s) <= MAX_SHIFT_SEMITONES for s in semitones
    ):
        return None
    return f"voice shifts {semitones!r} are not non-zero semitones within ±{MAX_SHIFT_SEMITONES:g}"


def speed_factor(semitones: float) -> float:
    """How much faster a copy plays to sound ``semitones`` higher."""
    return float(2.0 ** (semitones / 12.0))


class VoiceShifter:
    """The features of a window's shifted copies, cut from the stream's audio around it."""

    def __init__(
        self,
        semitones: Sequence[float],
        window_samples: int,
        settings: FeatureSettings = DEFAULT_SETTINGS,
    ) -> None:
        problem = shifts_problem(list(semitones))
        if problem:
            raise ValueError(problem)
        self.semitones = [float(s) for s in semitones]
        self.settings = settings
        self.window_samples = window_samples
        self.frames = settings.frames_in(window_samples)
        self._used = (self.frames - 1) * settings.hop_length + settings.frame_length
        self._spans = [round(window_samples * speed_factor(s)) for s in self.semitones]

    @property
    def context_samples(self) -> int:
        """The most audio a copy is cut from (the window's own length or more)."""
        return max([self.window_samples, *self._spans])

    def ready(self, start: int, available_end: int) -> bool:
        """Whether every copy of the window starting at stream sample ``start`` can be cut
        from a stream given up to sample ``available_end``."""
        end = start + self.window_samples
        return end >= self.context_samples or available_end >= start + self.context_samples

    def __call__(self, audio: np.ndarray, start: int) -> np.ndarray:
        """Per-window-normalised features of the copies of the window ``audio[start:]``.

        ``audio`` holds the window and what the stream gave around it (the window starts at
        index ``start``). Returns an array (copies, frames, features); copies that cannot be
        cut are left out with their mirror images.
        """
        audio = np.asarray(audio, dtype=np.float32)
        end = start + self.window_samples
        spans = {}
        for semitones, span in zip(self.semitones, self._spans, strict=True):
            if end - span >= 0:  # ending with the window
                spans[semitones] = (end - span, end)
            elif start + span <= len(audio):  # the stream's start: starting with it
                spans[semitones] = (start, start + span)
        out = []
        for semitones, (first, last) in spans.items():
            if -semitones in self.semitones and -semitones not in spans:
                continue
            heard = soxr.resample(
                audio[first:last], SAMPLE_RATE * speed_factor(semitones), SAMPLE_RATE
            )
            # The resampler may give a sample more or less than a window.
            heard = np.pad(heard[: self._used], (0, max(0, self._used - len(heard))), mode="edge")
            features = frame_features(heard, self.settings)[: self.frames]
            out.append(normalise_window(features, self.settings))
        if not out:
            return np.zeros((0, self.frames, self.settings.n_features), dtype=np.float32)
        return np.stack(out).astype(np.float32)


class StreamTail:
    """The latest samples of a stream, addressed by their position in the stream."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._audio = np.zeros(0, dtype=np.float32)
        self.end = 0  # stream position just after the last sample held

    @property
    def first(self) -> int:
        """Stream position of the oldest sample held."""
        return self.end - len(self._audio)

    def feed(self, samples: np.ndarray) -> None:
        self._audio = np.concatenate([self._audio, np.asarray(samples, dtype=np.float32)])
        self.end += len(samples)

    def span(self, first: int, last: int) -> np.ndarray:
        """Stream samples ``first`` to ``last`` (exclusive)."""
        if first < self.first or last > self.end or first > last:
            raise ValueError(f"samples {first}-{last} are not held ({self.first}-{self.end})")
        return self._audio[first - self.first : last - self.first]

    def forget_before(self, position: int) -> None:
        """Drop the samples before stream position ``position``."""
        drop = min(max(0, position - self.first), len(self._audio))
        self._audio = self._audio[drop:]
