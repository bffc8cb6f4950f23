"""The utterance head: each phrase heard against the same speaker's other phrases.

The networks judge 2 s windows, each normalised on its own, so they cannot hear that a
speaker is louder, higher, brighter or livelier than that speaker usually is: the cue a
listener who knows the voice relies on most. The utterance head hears exactly that.

- **Phrase**: the speech windows since the last pause (a window without speech), at most
  ``MAX_PHRASE_WINDOWS`` of them. Its summary is taken over the frames of those windows
  so far, each 10 ms frame once however many windows overlap it, so that where the window
  grid falls changes it little: each feature's spread and spread of frame-to-frame change,
  and the mean pitch and zero-crossing rate (``PhraseStats.summary``), before the
  per-window normalisation. No cepstral or level means: a microphone's gain and colouring
  move them, and held out by corpus the head scored better without them (0.370 against
  0.358 over five corpora, calibrated). Only frames within ``SPEECH_RANGE_DB`` of the
  window's loud frames count: the pauses and room tone a window holds would otherwise
  dominate every spread, and how much of them a phrase's windows hold depends on where
  the window grid falls. The threshold is relative, so the input's gain does not move it
  (the VAD's decisions, tried first, do).
- **Voice**: running mean and spread of this speaker's phrase summaries, starting from
  the training population's, worth ``prior_phrases`` phrases. The engine runs the head
  only with speaker calibration on (``listen`` and the app by default, ``analyze
  --calibrate``): against the population alone, as each clip alone would be heard, it
  cost more than it gave held out by corpus (models/README.md).
- **Head**: a multinomial logistic regression on the phrase summary z-scored by the voice's
  statistics, the current phrase counted in. The engine averages its probabilities with
  the networks' with the sidecar's ``weight``.

``training/utterance_head.py`` trains it on the same summaries, each training speaker's
clips heard in a seeded order, as one calibrated session hears them. One thread owns an
``UtteranceTracker`` (the engine's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ser_live.features import DEFAULT_SETTINGS, FeatureSettings
from ser_live.running_stats import PriorWeightedStats

#: Frames more than this far below a window's loud frames (its 95th percentile level)
#: are pauses or room tone, not the voice.
SPEECH_RANGE_DB = 35.0

#: A phrase longer than this many speech windows (about 8 s) is closed and a new one
#: starts, so a long turn without a pause still gets verdicts of its own moment.
MAX_PHRASE_WINDOWS = 16


def level_free(settings: FeatureSettings = DEFAULT_SETTINGS) -> list[int]:
    """The features whose mean neither the input's gain nor the microphone's colouring
    moves: the zero-crossing rate and the pitch."""
    return [settings.n_mfcc, settings.n_mfcc + 2]


def summary_size(n_features: int) -> int:
    """Values in a phrase summary: every feature's spread and spread of change, and the
    means of the two ``level_free`` ones."""
    return 2 * n_features + 2


@dataclass(frozen=True)
class PhraseStats:
    """Counts, sums and sums of squares of some frames and of their frame-to-frame steps:
    what a summary needs, and what adds up frame by frame."""

    n: float
    total: np.ndarray
    squares: np.ndarray
    n_steps: float
    step_total: np.ndarray
    step_squares: np.ndarray

    @classmethod
    def of(
        cls, frames: np.ndarray, steps_from: int = 0, settings: FeatureSettings = DEFAULT_SETTINGS
    ) -> PhraseStats:
        """The voiced frames of a window's ``frames`` (within ``SPEECH_RANGE_DB`` of its
        loud ones) from ``steps_from`` on, and the steps between voiced neighbours that
        end there, so that the statistics of consecutive stretches add up to the whole's."""
        frames = np.asarray(frames, dtype=np.float64)
        level = frames[:, settings.n_mfcc + 1]
        voiced = level >= np.percentile(level, 95) - SPEECH_RANGE_DB
        own = frames[steps_from:][voiced[steps_from:]]
        ends = np.arange(max(steps_from, 1), len(frames))
        ends = ends[voiced[ends] & voiced[ends - 1]]
        steps = frames[ends] - frames[ends - 1]
        return cls(
            float(len(own)),
            own.sum(axis=0),
            np.square(own).sum(axis=0),
            float(len(steps)),
            steps.sum(axis=0),
            np.square(steps).sum(axis=0),
        )

    def __add__(self, other: PhraseStats) -> PhraseStats:
        return PhraseStats(
            self.n + other.n,
            self.total + other.total,
            self.squares + other.squares,
            self.n_steps + other.n_steps,
            self.step_total + other.step_total,
            self.step_squares + other.step_squares,
        )

    def summary(self, settings: FeatureSettings = DEFAULT_SETTINGS) -> np.ndarray:
        """The ``level_free`` means, then each feature's spread and spread of change."""
        n, k = max(self.n, 1.0), max(self.n_steps, 1.0)
        mean = self.total / n
        spread = np.sqrt(np.maximum(self.squares / n - mean**2, 0.0))
        step_mean = self.step_total / k
        step_spread = np.sqrt(np.maximum(self.step_squares / k - step_mean**2, 0.0))
        return np.concatenate([mean[level_free(settings)], spread, step_spread])


@dataclass(frozen=True)
class WindowFrames:
    """A window's frames for the utterance head: all of them, and those of its last hop
    alone (with the step into them), which the window before it on the grid lacks."""

    start_s: float
    whole: PhraseStats
    newest: PhraseStats


@dataclass(frozen=True)
class UtteranceHead:
    """The sidecar's ``utterance_head``: the regression and its voice prior."""

    coef: np.ndarray  # (n_labels, n_summary)
    intercept: np.ndarray  # (n_labels,)
    population_mean: np.ndarray  # phrase summaries of the training population
    population_std: np.ndarray  # their spread within one speaker, averaged over speakers
    prior_phrases: float
    weight: float  # of the head's probabilities against the networks'

    @classmethod
    def from_dict(cls, data: dict) -> UtteranceHead:
        return cls(
            coef=np.asarray(data["coef"], dtype=np.float64),
            intercept=np.asarray(data["intercept"], dtype=np.float64),
            population_mean=np.asarray(data["population"]["mean"], dtype=np.float64),
            population_std=np.asarray(data["population"]["std"], dtype=np.float64),
            prior_phrases=float(data["prior_phrases"]),
            weight=float(data["weight"]),
        )

    def to_dict(self) -> dict:
        def floats(a: np.ndarray) -> list:
            return np.round(a.astype(np.float64), 6).tolist()

        return {
            "weight": self.weight,
            "prior_phrases": self.prior_phrases,
            "population": {
                "mean": floats(self.population_mean),
                "std": floats(self.population_std),
            },
            "coef": floats(self.coef),
            "intercept": floats(self.intercept),
        }

    def probabilities(self, z: np.ndarray) -> np.ndarray:
        logits = self.coef @ z + self.intercept
        e = np.exp(logits - logits.max())
        return (e / e.sum()).astype(np.float32)


def head_problem(data: object, n_labels: int, n_summary: int) -> str | None:
    """Why a sidecar's ``utterance_head`` cannot be used with ``n_labels`` outputs and
    window summaries of ``n_summary`` values; None if it can."""
    try:
        head = UtteranceHead.from_dict(data)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return "utterance_head lacks its coef, intercept, population, prior_phrases or weight"
    shapes_fit = (
        head.coef.shape == (n_labels, n_summary)
        and head.intercept.shape == (n_labels,)
        and head.population_mean.shape == head.population_std.shape == (n_summary,)
    )
    if not shapes_fit:
        return f"utterance_head does not fit {n_labels} labels of {n_summary} summary values"
    if not (
        0.0 < head.weight <= 1.0 and head.prior_phrases > 0 and np.all(head.population_std > 0)
    ):
        return "utterance_head needs a weight in (0, 1], a positive prior and positive spreads"
    return None


class VoicePhrases(PriorWeightedStats):
    """Running mean and spread of one voice's phrase summaries, from a prior."""

    @property
    def phrases_heard(self) -> int:
        return self.count

    def zscore(
        self, summary: np.ndarray, max_shift: float | None = None, trust: float = 1.0
    ) -> np.ndarray:
        """``summary`` relative to this voice, itself counted in (a phrase being heard is
        part of the voice too); the voice's statistics bounded by ``max_shift`` and shrunk
        by ``trust``."""
        return self.zscore_with(summary, max_shift, trust)


class UtteranceTracker:
    """The head's state in one stream: the current phrase and the voice's phrases."""

    def __init__(
        self,
        head: UtteranceHead,
        learn_voice: bool,
        hop_s: float,
        learns_from=None,
        max_shift: float | None = None,
    ) -> None:
        """``learn_voice``: finished phrases move the voice's statistics (calibration);
        ``hop_s``: the window grid's step; ``learns_from``: a ``ReferenceGate`` a phrase's
        mean network probabilities must pass to join the voice (None: every phrase);
        ``max_shift``: the calibration's bound, on the voice's phrase statistics too
        (``PriorWeightedStats.bounded``)."""
        self.head = head
        self.max_shift = max_shift
        self.trust = 1.0  # as the calibration's (``SpeakerCalibration.trust``)
        self.learn_voice = learn_voice
        self.learns_from = learns_from
        self._network_sum: np.ndarray | None = None
        self.hop_s = hop_s
        self.voice = VoicePhrases(head.population_mean, head.population_std, head.prior_phrases)
        self._phrase: PhraseStats | None = None
        self._phrase_windows = 0
        self._last_start: float | None = None

    def phrase_summary(self) -> np.ndarray | None:
        return None if self._phrase is None else self._phrase.summary()

    def listen(self, window: WindowFrames) -> np.ndarray:
        """Add a speech window to the phrase; the phrase so far relative to the voice (the
        head's input)."""
        if self._phrase_windows >= MAX_PHRASE_WINDOWS:
            self.end_phrase()
        # The next window on the grid adds only its last hop's frames; after a gap (a
        # window in between not classified), all of its own.
        follows = self._last_start is not None and (
            abs(window.start_s - self._last_start - self.hop_s) < 1e-6
        )
        if self._phrase is None:
            self._phrase = window.whole
        else:
            self._phrase = self._phrase + (window.newest if follows else window.whole)
        self._last_start = window.start_s
        self._phrase_windows += 1
        return self.voice.zscore(self.phrase_summary(), self.max_shift, self.trust)

    def hear(self, window: WindowFrames) -> np.ndarray:
        """Add a speech window to the phrase; the head's probabilities for the phrase so far."""
        return self.head.probabilities(self.listen(window))

    def mix(self, network_probabilities: np.ndarray, window: WindowFrames) -> np.ndarray:
        """The networks' probabilities for a speech window averaged with the head's."""
        # The head hears the phrase against the voice; as far as the voice is not yet
        # trusted, the networks alone decide, as for a clip heard alone (heard against
        # the population instead, the head cost 2.9 points: ser_live.engine).
        w = self.head.weight * self.trust
        head = self.hear(window)  # first: a phrase at its longest ends there
        self._network_sum = (
            network_probabilities
            if self._network_sum is None
            else self._network_sum + network_probabilities
        )
        mixed = (1.0 - w) * network_probabilities + w * head
        return mixed.astype(np.float32)

    def end_phrase(self) -> None:
        """A pause (or the end of a stream): the phrase joins the voice when learning."""
        summary = self.phrase_summary()
        heard_as_reference = (
            self.learns_from is None
            or self._network_sum is None
            or self.learns_from.admits(self._network_sum / self._phrase_windows)
        )
        if summary is not None and self.learn_voice and heard_as_reference:
            self.voice.add(summary)
        self._phrase, self._phrase_windows, self._last_start = None, 0, None
        self._network_sum = None

    def forget_voice(self) -> None:
        self.end_phrase()
        self.voice.reset()
