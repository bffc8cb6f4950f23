"""Speaker calibration: each voice heard relative to its own range, as the stream goes.

The model was trained on features standardised with the statistics of its training
speakers. A new voice sits elsewhere: higher or lower, livelier or flatter, through another
microphone. Calibration keeps running statistics of this stream's speech (every feature's
mean and spread over the frames of its classified windows) and maps each window so that
this voice's statistics land on the training population's before the model hears it:
``(x - speaker mean) / speaker std * training std + training mean``. The model then
judges how the voice moves relative to itself.

The statistics start from the training population's, worth ``prior_frames`` frames, so
the first seconds of a stream are heard almost as without calibration and the voice takes
over as it speaks (2000 frames: about ten 2 s windows, five seconds of speech). Speech
only: silence never enters them. Calibration assumes one voice per stream (one side of a
call, one speaker's recording); a stream that mixes voices calibrates to the mix.

Measured on the three corpora the shipped model never heard, one session per speaker
(models/README.md): see the model card's leave-one-corpus-out section.
"""

from __future__ import annotations

import numpy as np

#: The training population's weight, in frames, in a stream's running statistics.
PRIOR_FRAMES = 2000


class SpeakerCalibration:
    """Running per-feature statistics of one voice, and the map that calibrates to them."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, prior_frames: float) -> None:
        if not prior_frames > 0:
            raise ValueError("the calibration prior needs a positive weight")
        self._population_mean = np.asarray(mean, dtype=np.float64)
        self._population_std = np.asarray(std, dtype=np.float64)
        self.prior_frames = float(prior_frames)
        self.reset()

    def reset(self) -> None:
        """Forget the voice: back to the training population's statistics."""
        n = self.prior_frames
        self._n = n
        self._sum = n * self._population_mean
        self._sum_sq = n * (self._population_std**2 + self._population_mean**2)
        self.frames_heard = 0

    def update(self, window: np.ndarray) -> None:
        """Add the frames of one speech window (``(n_frames, n_features)``)."""
        frames = np.asarray(window, dtype=np.float64)
        self._n += len(frames)
        self._sum += frames.sum(axis=0)
        self._sum_sq += np.square(frames).sum(axis=0)
        self.frames_heard += len(frames)

    @property
    def mean(self) -> np.ndarray:
        return self._sum / self._n

    @property
    def std(self) -> np.ndarray:
        variance = self._sum_sq / self._n - np.square(self.mean)
        return np.sqrt(np.maximum(variance, 1e-12))

    def map(self, window: np.ndarray) -> np.ndarray:
        """The window as the training population's average voice would have given it."""
        scale = self._population_std / self.std
        out = (np.asarray(window, dtype=np.float64) - self.mean) * scale + self._population_mean
        return out.astype(np.float32)
