"""Signal-processing steps of the feature extractor, in NumPy alone, one frame per row.

Each function here takes a ``(n_frames, frame_length)`` array and computes every row from
that row alone, with arithmetic whose order does not depend on how many rows there are:

* FFTs go through ``numpy.fft`` (pocketfft, in float32 since NumPy 2), which transforms
  each row on its own: rows taken four or eight at a time in SIMD lanes get the same
  operations as a row alone (``tests/test_features.py`` checks this on the machine it runs
  on). ``scipy.fft`` is the same pocketfft, but importing it costs each process about
  0.4 s (it pulls in SciPy's array-API layer), which a short ``analyze`` run felt;
* sums are ufunc reductions along a row (``np.add.reduce``, ``np.add.reduceat``,
  ``np.cumsum``), whose order is fixed by the row's length;
* products of complex numbers are written out in real multiplies and adds, since NumPy's
  SIMD loops for complex arithmetic may fuse them differently in a vector body and its
  scalar tail;
* no matrix products: BLAS kernels (OpenBLAS picks one per CPU) sum in an order that
  depends on the matrix shape, so frame ``i`` of a 150-frame call and of a 300-frame
  call could differ in the last bits (found on an AMD EPYC with the Haswell kernels).

So the features of a stream computed in pieces equal, bit for bit, the features of the
whole computed at once, on any CPU. The numbers are those of librosa's ``stft``,
``filters.mel``, ``power_to_db``, ``feature.mfcc``, ``feature.zero_crossing_rate``,
``feature.rms`` and ``yin`` to float32 rounding (``tests/test_features.py`` checks them
against librosa, which training keeps as the reference). The runtime therefore needs
neither librosa nor its numba compiler (about 175 MB resident and 14 s of compiling on a
fresh install).
"""

from __future__ import annotations

import numpy as np


def frame(y: np.ndarray, frame_length: int, hop_length: int, n_frames: int) -> np.ndarray:
    """A read-only ``(n_frames, frame_length)`` view of ``y``, one frame every hop."""
    return np.lib.stride_tricks.sliding_window_view(y, frame_length)[::hop_length][:n_frames]


def hann_window(n: int) -> np.ndarray:
    """The periodic Hann window (``scipy.signal.get_window('hann', n)``, librosa's)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def power_spectrum(frames: np.ndarray, window: np.ndarray) -> np.ndarray:
    """``|rfft(window * frame)|**2`` per row, float32."""
    spectrum = np.fft.rfft(frames * window, axis=-1)
    return spectrum.real**2 + spectrum.imag**2


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (the Auditory Toolbox's; librosa's default)."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz, min_log_mel = 200.0 / 3, 1000.0, 15.0
    logstep = np.log(6.4) / 27.0
    linear = hz / f_sp
    log = min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz, min_log_mel = 200.0 / 3, 1000.0, 15.0
    logstep = np.log(6.4) / 27.0
    linear = f_sp * mel
    log = min_log_hz * np.exp(logstep * (np.maximum(mel, min_log_mel) - min_log_mel))
    return np.where(mel >= min_log_mel, log, linear)


def fast_length(n: int) -> int:
    """The smallest length >= ``n`` whose only prime factors are 2, 3 and 5 (as
    ``scipy.fft.next_fast_len``): pocketfft is fastest on those."""
    best = 1 << max(0, (n - 1).bit_length())
    five = 1
    while five < best:
        three = five
        while three < best:
            two = three
            while two < n:
                two *= 2
            best = min(best, two)
            three *= 3
        five *= 5
    return best


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular, area-normalised ("slaney") mel filters: ``(n_mels, n_fft // 2 + 1)``,
    float32, as ``librosa.filters.mel`` makes them."""
    fft_hz = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, np.newaxis] - fft_hz[np.newaxis, :]
    rising = -ramps[:-2] / widths[:-1, np.newaxis]
    falling = ramps[2:] / widths[1:, np.newaxis]
    # Rounded to float32 before and after the area scaling, as librosa does.
    weights = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    area = 2.0 / (edges_hz[2:] - edges_hz[:-2])
    return (weights * area[:, np.newaxis]).astype(np.float32)


class MelProjection:
    """Power spectrum rows to mel bands, as sums over each band's own bins.

    A mel filter is non-zero on one run of neighbouring bins, so each band is a short
    weighted sum; ``np.add.reduceat`` adds each run in a fixed order, row by row.
    """

    def __init__(self, filterbank: np.ndarray) -> None:
        bins, weights, starts = [], [], []
        for band, row in enumerate(filterbank):
            nonzero = np.flatnonzero(row)
            if len(nonzero) == 0 or nonzero[-1] - nonzero[0] + 1 != len(nonzero):
                raise ValueError(f"mel band {band} is empty or not one run of bins")
            starts.append(sum(map(len, bins)))
            bins.append(nonzero)
            weights.append(row[nonzero])
        self.n_bands = len(filterbank)
        self._bins = np.concatenate(bins)
        self._weights = np.concatenate(weights).astype(np.float32)
        self._starts = np.asarray(starts)

    def __call__(self, power: np.ndarray) -> np.ndarray:
        """``(n_frames, n_bins)`` power to ``(n_frames, n_bands)``."""
        if len(power) == 0:
            return np.zeros((0, self.n_bands), dtype=np.float32)
        products = power[:, self._bins] * self._weights
        return np.add.reduceat(products, self._starts, axis=1)


def power_to_db(power: np.ndarray, amin: float = 1e-10) -> np.ndarray:
    """``10 log10(max(power, amin))``, with no clipping relative to the loudest value."""
    return 10.0 * np.log10(np.maximum(power, np.float32(amin)))


class DCT2:
    """The orthonormal DCT-II along rows, first ``n_out`` coefficients
    (``scipy.fft.dct(x, type=2, norm='ortho')[..., :n_out]``), through one real FFT per row
    (Makhoul's reordering)."""

    def __init__(self, n: int, n_out: int) -> None:
        if not 0 < n_out <= n or n % 2:
            raise ValueError("the DCT needs an even length and 0 < n_out <= n")
        self.n, self.n_out = n, n_out
        self._order = np.concatenate([np.arange(0, n, 2), np.arange(n - 1, 0, -2)])
        k = np.arange(n_out)
        scale = np.where(k == 0, np.sqrt(1.0 / n), np.sqrt(2.0 / n))
        self._cos = (np.cos(np.pi * k / (2 * n)) * scale).astype(np.float32)
        self._sin = (np.sin(np.pi * k / (2 * n)) * scale).astype(np.float32)
        # rfft gives bins 0..n/2; bin k > n/2 is the conjugate of bin n - k.
        self._bin = np.where(k <= n // 2, k, n - k)
        self._imag_sign = np.where(k <= n // 2, 1.0, -1.0).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        spectrum = np.fft.rfft(x[:, self._order], axis=-1)[:, self._bin]
        return spectrum.real * self._cos + (spectrum.imag * self._imag_sign) * self._sin


def zero_crossing_rate(frames: np.ndarray, threshold: float = 1e-10) -> np.ndarray:
    """Fraction of sign changes per row, counting samples within ``threshold`` of zero as
    positive (``librosa.feature.zero_crossing_rate``, frame by frame)."""
    negative = np.signbit(frames) & (np.abs(frames) > threshold)
    changes = np.count_nonzero(negative[:, 1:] != negative[:, :-1], axis=-1)
    return (changes / frames.shape[-1]).astype(np.float32)


def rms(frames: np.ndarray) -> np.ndarray:
    """Root mean square per row."""
    return np.sqrt(np.mean(np.square(frames), axis=-1))


def yin(
    frames: np.ndarray, sr: int, fmin: float, fmax: float, threshold: float = 0.1
) -> np.ndarray:
    """The fundamental frequency of each row by YIN (de Cheveigné & Kawahara 2002), as
    ``librosa.yin`` (0.11) estimates it with ``frame_length`` = the row length: difference
    function from the row's autocorrelation, cumulative mean normalisation, the first
    trough under ``threshold`` (else the lowest point), refined by a parabola through it
    and its neighbours."""
    n_frames, length = frames.shape
    min_period = int(np.floor(sr / fmax))
    max_period = min(int(np.ceil(sr / fmin)), length - 1)
    if n_frames == 0:
        return np.zeros(0, dtype=np.float32)

    # Autocorrelation, lags 0..max_period, through the power spectrum of the row padded
    # enough that no lag wraps round (librosa pads to twice the row: the same numbers).
    n_fft = fast_length(length + max_period)
    spectrum = np.fft.rfft(frames, n_fft, axis=-1)
    acf = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, n_fft, axis=-1)[:, : max_period + 1]
    # d(k) = 2 (acf(0) - acf(k)) - (energy of the first k samples)
    energy = np.cumsum(np.square(frames[:, :max_period]), axis=-1)
    difference = 2 * (acf[:, :1] - acf[:, 1:]) - energy

    # Cumulative mean normalised difference, lags min_period..max_period.
    numerator = difference[:, min_period - 1 :]
    lags = np.arange(1, max_period + 1, dtype=np.float32)
    cumulative_mean = np.cumsum(difference, axis=-1) / lags
    denominator = cumulative_mean[:, min_period - 1 :]
    d = numerator / (denominator + np.finfo(denominator.dtype).tiny)

    # Troughs: below the previous lag and not above the next (the first lag: below the next).
    trough = np.empty(d.shape, dtype=bool)
    trough[:, 1:-1] = (d[:, 1:-1] < d[:, :-2]) & (d[:, 1:-1] <= d[:, 2:])
    trough[:, -1] = d[:, -1] < d[:, -2]
    trough[:, 0] = d[:, 0] < d[:, 1]
    deep = trough & (d < threshold)
    best = np.where(deep.any(axis=-1), deep.argmax(axis=-1), d.argmin(axis=-1))

    # Parabolic refinement through the chosen lag and its neighbours; the end lags get none.
    rows = np.arange(n_frames)
    inner = np.clip(best, 1, d.shape[1] - 2)
    left, centre, right = d[rows, inner - 1], d[rows, inner], d[rows, inner + 1]
    curvature = right + left - 2 * centre
    slope = (right - left) / 2
    refine = (np.abs(slope) < np.abs(curvature)) & (best == inner)
    shift = np.zeros(n_frames, dtype=d.dtype)
    shift[refine] = -slope[refine] / curvature[refine]
    period = min_period + best + shift
    return (sr / period).astype(np.float32)
