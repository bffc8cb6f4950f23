"""Training-side augmentation: what a new speaker, room, microphone or phone line does.

Built from audiomentations, plus a synthetic room impulse response (exponentially decaying
noise with a random RT60), which needs no impulse-response files. The per-window cepstral
mean normalisation in ``ser_live.features`` cancels a fixed colouring; these augmentations
teach the model what that normalisation cannot remove: noise, reverberation tails, band
limiting (telephony is 300-3400 Hz), level and voice changes.
"""

from __future__ import annotations

import random

import audiomentations as am
import numpy as np
from scipy.signal import fftconvolve

from ser_live import SAMPLE_RATE


def room_tail(rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room's impulse response: noise decaying to -60 dB at ``rt60`` seconds."""
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    return rng.standard_normal(n) * np.exp(-6.9 * t / rt60)


def reverberate(samples: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """``samples`` through the impulse response ``ir``, kept at their own peak level."""
    wet = fftconvolve(samples, ir)[: len(samples)]
    peak_in, peak_out = np.abs(samples).max(), np.abs(wet).max()
    return (wet * (peak_in / peak_out if peak_out > 0 else 1.0)).astype(np.float32)


def synthetic_room(samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a random exponentially decaying noise tail (RT60 0.15-0.7 s)."""
    ir = room_tail(rng.uniform(0.15, 0.7), rng)
    ir[0] = 1.0 / rng.uniform(0.3, 1.0)  # direct path stronger than the tail
    return reverberate(samples, ir)


class Augmenter:
    def __init__(self) -> None:
        self._chain = am.Compose(
            [
                am.PitchShift(min_semitones=-3, max_semitones=3, p=0.5),
                am.TimeStretch(min_rate=0.85, max_rate=1.15, leave_length_unchanged=False, p=0.4),
                am.SevenBandParametricEQ(min_gain_db=-8, max_gain_db=8, p=0.5),
                am.HighPassFilter(min_cutoff_freq=60, max_cutoff_freq=400, p=0.3),
                am.LowPassFilter(min_cutoff_freq=3000, max_cutoff_freq=7000, p=0.3),
                am.OneOf(
                    [
                        am.AddGaussianSNR(min_snr_db=5, max_snr_db=35, p=1.0),
                        am.AddColorNoise(min_snr_db=5, max_snr_db=35, p=1.0),
                    ],
                    p=0.6,
                ),
                am.Gain(min_gain_db=-20, max_gain_db=6, p=1.0),
            ]
        )

    def __call__(self, samples: np.ndarray, seed: int) -> np.ndarray:
        # audiomentations draws from the global generators: seed them for this one clip.
        random.seed(seed)
        np.random.seed(seed % 2**32)
        rng = np.random.default_rng(seed)
        out = samples
        if rng.random() < 0.3:
            out = synthetic_room(out, rng)
        out = self._chain(samples=out.astype(np.float32), sample_rate=SAMPLE_RATE)
        return np.clip(out, -1.0, 1.0).astype(np.float32)
