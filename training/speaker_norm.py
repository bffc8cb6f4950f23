"""Speaker-normalised training windows: each voice heard relative to itself.

Each training window's features are z-scored with the statistics of its *group*: one
speaker's windows of one copy (the clean recordings, or the n-th augmented copy of each of
that speaker's clips), over every frame of them. That is what the engine's speaker
calibration hears once it has converged on a voice (``ser_live.calibration``), so a network
trained on these windows and run with calibration hears the same kind of input in both.
The population statistics (the same windows before normalisation) go to the sidecar as the
calibration's prior: what a voice is assumed to be before it has been heard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ser_live.features import Standardiser


@dataclass(frozen=True)
class GroupStats:
    """Per group: frames' mean and std (``(n_groups, n_features)``) before normalisation."""

    group: np.ndarray  # each window's group index
    mean: np.ndarray
    std: np.ndarray

    def population(self, mask: np.ndarray) -> Standardiser:
        """The statistics, before normalisation, of the windows in ``mask``, from their
        groups' (every window of a group has the same number of frames)."""
        counts = np.bincount(self.group[mask], minlength=len(self.mean)).astype(np.float64)
        weights = counts / counts.sum()
        mean = weights @ self.mean
        second = weights @ (np.square(self.std) + np.square(self.mean))
        std = np.sqrt(np.maximum(second - np.square(mean), 1e-12))
        return Standardiser(mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32))


def speaker_groups(speaker: np.ndarray, copy: np.ndarray) -> np.ndarray:
    """Each window's group: its (speaker, copy) pair, numbered."""
    keys = np.char.add(np.char.add(speaker.astype(str), "|"), copy.astype(str))
    return np.unique(keys, return_inverse=True)[1]


def normalise_by_group(x: np.ndarray, group: np.ndarray) -> GroupStats:
    """Z-score ``x`` (``(windows, frames, features)``) in place, each window with its
    group's frame statistics; returns those statistics."""
    n_groups = int(group.max()) + 1
    means = np.zeros((n_groups, x.shape[2]))
    stds = np.ones((n_groups, x.shape[2]))
    for g in range(n_groups):
        rows = np.flatnonzero(group == g)
        frames = x[rows].reshape(-1, x.shape[2]).astype(np.float64)
        means[g], stds[g] = frames.mean(axis=0), np.maximum(frames.std(axis=0), 1e-6)
        x[rows] = ((x[rows] - means[g]) / stds[g]).astype(x.dtype)
    return GroupStats(group, means, stds)
