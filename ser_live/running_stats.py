"""Running mean and spread of one voice's observations, starting from a prior.

Speaker calibration (``ser_live.calibration``: the frames of a voice's speech) and the
utterance head (``ser_live.utterance``: the summaries of its phrases) both start from the
training population's statistics, counted as if they were ``prior_weight`` observations,
so that the first moments of a voice are heard almost as the population and the voice
takes over as it speaks. One thread owns an instance (its engine's).
"""

from __future__ import annotations

import numpy as np


class PriorWeightedStats:
    """Per-dimension running mean and spread of vectors, from a prior."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, prior_weight: float) -> None:
        if not prior_weight > 0:
            raise ValueError("the prior needs a positive weight")
        self.prior_mean = np.asarray(mean, dtype=np.float64)
        self.prior_std = np.asarray(std, dtype=np.float64)
        self.prior_weight = float(prior_weight)
        self.reset()

    def reset(self) -> None:
        """Back to the prior: nothing of the voice heard."""
        n = self.prior_weight
        self._n = n
        self._sum = n * self.prior_mean
        self._sum_sq = n * (self.prior_std**2 + self.prior_mean**2)
        self.count = 0  # observations added since the last reset

    def add(self, rows: np.ndarray) -> None:
        """Add one observation ``(d,)`` or several ``(n, d)``."""
        x = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        self._n += len(x)
        self._sum += x.sum(axis=0)
        self._sum_sq += np.square(x).sum(axis=0)
        self.count += len(x)

    @property
    def mean(self) -> np.ndarray:
        return self._sum / self._n

    @property
    def std(self) -> np.ndarray:
        return self._spread(self._sum_sq / self._n - np.square(self.mean))

    def zscore_with(
        self, x: np.ndarray, max_shift: float | None = None, trust: float = 1.0
    ) -> np.ndarray:
        """``x`` relative to these statistics with ``x`` itself counted in (an observation
        still being heard is part of the voice too), without adding it; bounded as
        ``bounded`` bounds them and shrunk as ``shrunk`` shrinks them."""
        x = np.asarray(x, dtype=np.float64)
        n = self._n + 1
        mean = (self._sum + x) / n
        std = self._spread((self._sum_sq + x * x) / n - mean * mean)
        mean, std = self.shrunk(*self.bounded(mean, std, max_shift), trust)
        return (x - mean) / std

    def bounded(
        self, mean: np.ndarray, std: np.ndarray, max_shift: float | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """A voice's ``mean`` and ``std`` kept within ``max_shift`` of the prior's spreads
        of its mean and within a factor ``1 + max_shift`` of its spread (None: as they
        are): however long a voice keeps one manner, it moves its statistics only so far."""
        if max_shift is None:
            return mean, std
        reach = max_shift * self.prior_std
        mean = np.clip(mean, self.prior_mean - reach, self.prior_mean + reach)
        factor = 1.0 + max_shift
        return mean, np.clip(std, self.prior_std / factor, self.prior_std * factor)

    def shrunk(
        self, mean: np.ndarray, std: np.ndarray, trust: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """A voice's ``mean`` and ``std`` taken only ``trust`` (in [0, 1]) of the way from
        the prior's (the spread on a log scale, so a factor is shrunk as a factor)."""
        if trust >= 1.0:
            return mean, std
        mean = self.prior_mean + trust * (mean - self.prior_mean)
        return mean, self.prior_std * (std / self.prior_std) ** trust

    @staticmethod
    def _spread(variance: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(variance, 1e-12))
