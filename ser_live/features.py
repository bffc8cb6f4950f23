"""The one feature extractor shared by the live engine and ``training/``.

Per 10 ms frame: 40 MFCCs (from a 64-band log-mel spectrum), zero-crossing rate, RMS
level in dB and the fundamental frequency (YIN) in semitones. Frames are computed with
``center=False``: frame ``i`` depends only on the 800 samples from ``i * hop`` (the pitch
tracker needs two periods of its lowest pitch; the 512-sample spectral frame sits in the
middle of that span), and every step is per frame (no clipping relative to the loudest
frame, no smoothing across frames), so features computed incrementally on a stream are
exactly the features of the same samples computed at once, and a window's features are a
slice of the stream's.

Normalisation has two stages, both recorded in the model's sidecar:

* per window (``normalise_window``): the mean of each cepstral coefficient and of the dB
  level over the window is subtracted. A fixed gain or a fixed microphone/room colouring is
  an additive constant in the cepstrum and in dB, so this removes it; what is left is how
  the voice moves, which is what carries emotion across recording setups. Pitch is left
  absolute: no gain or colouring changes it, and its height carries emotion.
* global (``Standardiser``): z-scoring with the training set's per-feature mean and std.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

from ser_live import SAMPLE_RATE, dsp

#: Bumped whenever the numbers this module computes change; stored in the sidecar.
FEATURE_VERSION = 3


@dataclass(frozen=True)
class FeatureSettings:
    sample_rate: int = SAMPLE_RATE
    n_fft: int = 512
    hop_length: int = 160
    n_mels: int = 64
    n_mfcc: int = 40
    fmin: float = 50.0
    fmax: float = 8000.0
    rms_floor_db: float = -100.0
    pitch_frame_length: int = 800
    f0_min: float = 60.0
    f0_max: float = 500.0
    f0_ref_hz: float = 55.0  # semitone 0
    version: int = FEATURE_VERSION

    @property
    def frame_length(self) -> int:
        """Samples one frame's features depend on."""
        return max(self.n_fft, self.pitch_frame_length)

    @property
    def n_features(self) -> int:
        return self.n_mfcc + 3  # MFCCs, ZCR, RMS dB, F0

    @property
    def feature_names(self) -> list[str]:
        return [f"mfcc{i}" for i in range(self.n_mfcc)] + ["zcr", "rms_db", "f0_semitones"]

    def frames_in(self, n_samples: int) -> int:
        """Number of whole frames in ``n_samples`` samples."""
        if n_samples < self.frame_length:
            return 0
        return (n_samples - self.frame_length) // self.hop_length + 1

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_SETTINGS = FeatureSettings()


def _spectral_samples(y: np.ndarray, n_frames: int, s: FeatureSettings) -> np.ndarray:
    """The samples of ``n_frames`` spectral frames: each sits in the middle of the
    (longer) pitch frame."""
    offset = (s.frame_length - s.n_fft) // 2
    return y[offset : offset + (n_frames - 1) * s.hop_length + s.n_fft]


@dataclass(frozen=True)
class _Steps:
    """The fixed parts of the extractor for one set of settings."""

    window: np.ndarray
    mel: dsp.MelProjection
    dct: dsp.DCT2


@functools.lru_cache(maxsize=4)
def _steps(s: FeatureSettings) -> _Steps:
    filterbank = dsp.mel_filterbank(s.sample_rate, s.n_fft, s.n_mels, s.fmin, s.fmax)
    return _Steps(
        dsp.hann_window(s.n_fft), dsp.MelProjection(filterbank), dsp.DCT2(s.n_mels, s.n_mfcc)
    )


def _spectral_frames(y: np.ndarray, n_frames: int, s: FeatureSettings) -> np.ndarray:
    return dsp.frame(_spectral_samples(y, n_frames, s), s.n_fft, s.hop_length, n_frames)


def _log_mel(spectral_frames: np.ndarray, s: FeatureSettings) -> np.ndarray:
    """Log-mel spectrum in dB, shape ``(n_frames, n_mels)``. No clipping relative to the
    loudest frame (librosa's ``top_db``), which would tie a frame to its neighbours."""
    steps = _steps(s)
    return dsp.power_to_db(steps.mel(dsp.power_spectrum(spectral_frames, steps.window)))


def log_mel_spectrum(
    samples: np.ndarray, settings: FeatureSettings = DEFAULT_SETTINGS
) -> np.ndarray:
    """The log-mel spectrum the MFCCs of ``frame_features`` are taken from, in dB:
    shape ``(n_frames, n_mels)``."""
    y = np.ascontiguousarray(samples, dtype=np.float32)
    n_frames = settings.frames_in(len(y))
    if n_frames == 0:
        return np.zeros((0, settings.n_mels), dtype=np.float32)
    return _log_mel(_spectral_frames(y, n_frames, settings), settings)


def frame_features(samples: np.ndarray, settings: FeatureSettings = DEFAULT_SETTINGS) -> np.ndarray:
    """Features of every whole frame in ``samples``: shape ``(n_frames, n_features)``, float32.

    Every frame's numbers come from its own samples alone, in the same arithmetic however
    many frames are computed together (see ``ser_live.dsp``).
    """
    y = np.ascontiguousarray(samples, dtype=np.float32)
    s = settings
    n_frames = s.frames_in(len(y))
    if n_frames == 0:
        return np.zeros((0, s.n_features), dtype=np.float32)
    spectral = _spectral_frames(y, n_frames, s)
    mfcc = _steps(s).dct(_log_mel(spectral, s))
    zcr = dsp.zero_crossing_rate(spectral)
    rms_db = 20.0 * np.log10(
        np.maximum(dsp.rms(spectral), np.float32(10.0 ** (s.rms_floor_db / 20.0)))
    )
    # YIN gives a pitch for every frame; in unvoiced frames it is arbitrary, which the
    # network reads next to ZCR and level. (pYIN would say which frames are voiced, but its
    # Viterbi pass makes every frame depend on the whole recording.)
    pitch_frames = dsp.frame(y, s.pitch_frame_length, s.hop_length, n_frames)
    f0 = dsp.yin(pitch_frames, s.sample_rate, s.f0_min, s.f0_max)
    f0_semitones = 12.0 * np.log2(np.clip(f0, s.f0_min, s.f0_max) / s.f0_ref_hz)
    out = np.column_stack([mfcc, zcr, rms_db, f0_semitones])
    return np.ascontiguousarray(out, dtype=np.float32)


def normalise_window(
    frames: np.ndarray, settings: FeatureSettings = DEFAULT_SETTINGS
) -> np.ndarray:
    """Per-window mean removal of the cepstrum and the dB level (see the module docstring)."""
    out = np.array(frames, dtype=np.float32, copy=True)
    centred = [*list(range(settings.n_mfcc)), settings.n_mfcc + 1]
    out[:, centred] -= out[:, centred].mean(axis=0, keepdims=True)
    return out


@dataclass(frozen=True)
class Standardiser:
    """Global per-feature z-scoring with statistics of the training set."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, windows: np.ndarray) -> Standardiser:
        flat = windows.reshape(-1, windows.shape[-1]).astype(np.float64)
        return cls(
            mean=flat.mean(axis=0).astype(np.float32),
            std=np.maximum(flat.std(axis=0), 1e-6).astype(np.float32),
        )

    def __call__(self, window: np.ndarray) -> np.ndarray:
        return ((window - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, data: dict) -> Standardiser:
        return cls(
            mean=np.asarray(data["mean"], dtype=np.float32),
            std=np.asarray(data["std"], dtype=np.float32),
        )


def warm_up(settings: FeatureSettings = DEFAULT_SETTINGS) -> None:
    """Build the filters and run the extractor once (a few milliseconds), so that the
    first real window is as fast as the rest."""
    frame_features(np.zeros(settings.frame_length * 4, dtype=np.float32), settings)
