"""How varied a voice's speech has sounded so far: the trust its calibration earns.

Calibration learns a voice's statistics from its speech, and it cannot tell a voice's
manner from a mood that lasts: a caller angry for the whole call has anger for a
baseline, and the anger fades. A voice heard in several emotions gives statistics of the
voice; one heard in a single emotion gives statistics of that emotion. So calibration is
trusted only as far as the speech it learnt from has varied: the voice's statistics are
shrunk toward the training population's by a ``trust`` in [0, 1] that grows with the
variety of the model's verdicts of this voice (``SpeakerCalibration.trust``; the issue's
"shrink toward population statistics until enough varied speech has been heard").

The verdicts are the model's without calibration (the population's view of the voice): a
calibrated verdict varies more as the map moves, which would earn the map more trust,
and a lasting emotion would learn itself away after all. Variety is how much the
verdicts vary *between phrases*: the spread of each phrase's mean verdict around the
voice's mean (``sum_j n_j |m_j - m|^2 / N`` over phrases ``j`` of ``n_j`` windows), for the
windows within a phrase, which overlap and share a sentence, vary with its words as much
as with any mood. It is counted as if ``prior_windows`` windows of no variety had been
heard first, so that a few windows earn little; trust is that variety over ``full_at``,
at most 1. Heard without calibration on held-out corpora, one speaker's clips of one
emotion vary between clips about half as much as the same speaker's clips of several
(docs/experiments.md).

One thread owns an instance (its engine's).
"""

from __future__ import annotations

import numpy as np


class VerdictVariety:
    """Running variety of one voice's verdicts, and the trust it earns."""

    def __init__(self, full_at: float, prior_windows: float) -> None:
        """``full_at``: the variety at which calibration is fully trusted; ``prior_windows``:
        how many windows of no variety the estimate starts from."""
        if not full_at > 0 or not prior_windows >= 0:
            raise ValueError("variety needs a positive full_at and a non-negative prior")
        self.full_at = float(full_at)
        self.prior_windows = float(prior_windows)
        self.reset()

    @classmethod
    def from_sidecar(cls, setup: dict) -> VerdictVariety | None:
        """From a sidecar's ``speaker_calibration.variety`` (None where it has none)."""
        variety = setup.get("variety")
        if variety is None:
            return None
        return cls(float(variety["full_at"]), float(variety["prior_windows"]))

    def reset(self) -> None:
        """A new voice: nothing heard."""
        self._n = 0
        self._sum: np.ndarray | None = None  # of every verdict
        self._phrase_sum: np.ndarray | None = None  # of the current phrase's
        self._phrase_n = 0
        self._phrase_energy = 0.0  # sum over finished phrases of n_j |m_j|^2

    def add(self, probabilities: np.ndarray) -> None:
        """One speech window's verdict, as the model gives it without calibration."""
        p = np.asarray(probabilities, dtype=np.float64)
        self._n += 1
        self._sum = p.copy() if self._sum is None else self._sum + p
        self._phrase_sum = p.copy() if self._phrase_sum is None else self._phrase_sum + p
        self._phrase_n += 1

    def end_phrase(self) -> None:
        """A pause, or the end of a stream: the next window starts another phrase."""
        if self._phrase_sum is not None:
            self._phrase_energy += float(self._phrase_sum @ self._phrase_sum) / self._phrase_n
        self._phrase_sum, self._phrase_n = None, 0

    @property
    def windows_heard(self) -> int:
        return self._n

    @property
    def variety(self) -> float:
        """The phrases' spread around the voice's mean verdict, shrunk toward none by the
        prior's windows."""
        if self._sum is None:
            return 0.0
        energy = self._phrase_energy
        if self._phrase_sum is not None:
            energy += float(self._phrase_sum @ self._phrase_sum) / self._phrase_n
        mean = self._sum / self._n
        spread = max(0.0, energy / self._n - float(mean @ mean))
        return spread * self._n / (self._n + self.prior_windows)

    @property
    def trust(self) -> float:
        return min(1.0, self.variety / self.full_at)


def variety_problem(setup: dict) -> str | None:
    """Why a sidecar's ``speaker_calibration.variety`` is unusable; None if it is."""
    variety = setup.get("variety")
    if variety is None:
        return None
    try:
        full_at, prior = float(variety["full_at"]), float(variety["prior_windows"])
    except (KeyError, TypeError, ValueError):
        return "speaker_calibration.variety needs full_at and prior_windows"
    if not (full_at > 0 and prior >= 0):
        return "speaker_calibration.variety needs a positive full_at and prior_windows >= 0"
    return None
