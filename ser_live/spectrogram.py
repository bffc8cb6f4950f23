"""Log-mel columns for display, computed block by block (NumPy only, no Qt)."""

from __future__ import annotations

import numpy as np

from ser_live import SAMPLE_RATE
from ser_live.dsp import mel_filterbank


class LogMelTap:
    """Turns a 16 kHz stream into 64-band log-mel columns, one per 20 ms, in dB (10 ms
    columns doubled the cost of drawing them, for no detail the eye can see)."""

    def __init__(self, n_fft: int = 512, hop: int = 320, n_mels: int = 64) -> None:
        self.n_fft, self.hop = n_fft, hop
        self._window = np.hanning(n_fft).astype(np.float32)
        # Scaled so that a full-scale sine reads about 0 dB in its band: dBFS-like columns.
        self._scale = 4.0 / float(self._window.sum()) ** 2
        self._mel = mel_filterbank(SAMPLE_RATE, n_fft, n_mels, 50.0, 8000.0)
        self._carry = np.zeros(0, dtype=np.float32)

    def reset(self) -> None:
        self._carry = np.zeros(0, dtype=np.float32)

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """Columns completed by ``samples``: shape ``(n_columns, n_mels)``."""
        data = np.concatenate([self._carry, np.asarray(samples, dtype=np.float32)])
        n = 0 if len(data) < self.n_fft else (len(data) - self.n_fft) // self.hop + 1
        self._carry = data[n * self.hop :]
        if n == 0:
            return np.zeros((0, self._mel.shape[0]), dtype=np.float32)
        frames = np.lib.stride_tricks.sliding_window_view(data, self.n_fft)[:: self.hop][:n]
        power = np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2
        return (10 * np.log10(self._scale * power @ self._mel.T + 1e-12)).astype(np.float32)
