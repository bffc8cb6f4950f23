"""The utterance head: each phrase heard against the same speaker's other phrases.

The networks judge 2 s windows, each normalised on its own, so they cannot hear that a
speaker is louder, higher, brighter or livelier than that speaker usually is: the cue a
listener who knows the voice relies on most. The utterance head hears exactly that.

- **Phrase**: the speech windows since the last pause (a window without speech), at most
  ``MAX_PHRASE_WINDOWS`` of them. Its summary is the mean of its windows' frame summaries
  so far (``frontend.frame_summary``: each feature's mean, spread and spread of change
  over the window, before the per-window normalisation).
- **Voice**: running mean and spread of this speaker's phrase summaries, starting from
  the training population's, worth ``prior_phrases`` phrases. Only speaker calibration
  (``--calibrate``) lets a voice move them; without it they stay at the population's, as
  they are for the first phrases of any voice.
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

#: A phrase longer than this many speech windows (about 8 s) is closed and a new one
#: starts, so a long turn without a pause still gets verdicts of its own moment.
MAX_PHRASE_WINDOWS = 16


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


class VoicePhrases:
    """Running mean and spread of one voice's phrase summaries, from a prior."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, prior_phrases: float) -> None:
        self._prior_mean = np.asarray(mean, dtype=np.float64)
        self._prior_std = np.asarray(std, dtype=np.float64)
        self.prior_phrases = float(prior_phrases)
        self.reset()

    def reset(self) -> None:
        n = self.prior_phrases
        self._n = n
        self._sum = n * self._prior_mean
        self._sum_sq = n * (self._prior_std**2 + self._prior_mean**2)
        self.phrases_heard = 0

    def add(self, summary: np.ndarray) -> None:
        s = np.asarray(summary, dtype=np.float64)
        self._n += 1
        self._sum += s
        self._sum_sq += s * s
        self.phrases_heard += 1

    def zscore(self, summary: np.ndarray) -> np.ndarray:
        """``summary`` relative to this voice, itself counted in (a phrase being heard is
        part of the voice too)."""
        s = np.asarray(summary, dtype=np.float64)
        n = self._n + 1
        mean = (self._sum + s) / n
        variance = (self._sum_sq + s * s) / n - mean * mean
        return (s - mean) / np.sqrt(np.maximum(variance, 1e-12))


class UtteranceTracker:
    """The head's state in one stream: the current phrase and the voice's phrases."""

    def __init__(self, head: UtteranceHead, learn_voice: bool) -> None:
        """``learn_voice``: finished phrases move the voice's statistics (calibration)."""
        self.head = head
        self.learn_voice = learn_voice
        self.voice = VoicePhrases(head.population_mean, head.population_std, head.prior_phrases)
        self._phrase_sum: np.ndarray | None = None
        self._phrase_windows = 0

    def phrase_summary(self) -> np.ndarray | None:
        if self._phrase_sum is None:
            return None
        return self._phrase_sum / self._phrase_windows

    def listen(self, window_summary: np.ndarray) -> np.ndarray:
        """Add a speech window to the phrase; the phrase so far relative to the voice (the
        head's input)."""
        if self._phrase_windows >= MAX_PHRASE_WINDOWS:
            self.end_phrase()
        s = np.asarray(window_summary, dtype=np.float64)
        self._phrase_sum = s.copy() if self._phrase_sum is None else self._phrase_sum + s
        self._phrase_windows += 1
        return self.voice.zscore(self.phrase_summary())

    def hear(self, window_summary: np.ndarray) -> np.ndarray:
        """Add a speech window to the phrase; the head's probabilities for the phrase so far."""
        return self.head.probabilities(self.listen(window_summary))

    def mix(self, network_probabilities: np.ndarray, window_summary: np.ndarray) -> np.ndarray:
        """The networks' probabilities for a speech window averaged with the head's."""
        w = self.head.weight
        mixed = (1.0 - w) * network_probabilities + w * self.hear(window_summary)
        return mixed.astype(np.float32)

    def end_phrase(self) -> None:
        """A pause (or the end of a stream): the phrase joins the voice when learning."""
        summary = self.phrase_summary()
        if summary is not None and self.learn_voice:
            self.voice.add(summary)
        self._phrase_sum, self._phrase_windows = None, 0

    def forget_voice(self) -> None:
        self.end_phrase()
        self.voice.reset()
