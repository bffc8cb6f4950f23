"""The one feature extractor shared by the live engine and ``training/``.

Per 10 ms frame: 40 MFCCs (from a 64-band log-mel spectrum), zero-crossing rate and RMS
level in dB. Frames are computed with ``center=False``: a frame depends only on its own
512 samples, and every step after the STFT is per frame (no clipping relative to the
loudest frame), so features computed incrementally on a stream are exactly the features
of the same samples computed at once, and a window's features are a slice of the stream's.

Normalisation has two stages, both recorded in the model's sidecar:

* per window (``normalise_window``): the mean of each cepstral coefficient and of the dB
  level over the window is subtracted. A fixed gain or a fixed microphone/room colouring is
  an additive constant in the cepstrum and in dB, so this removes it; what is left is how
  the voice moves, which is what carries emotion across recording setups.
* global (``Standardiser``): z-scoring with the training set's per-feature mean and std.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import librosa
import numpy as np

from ser_live import SAMPLE_RATE

#: Bumped whenever the numbers this module computes change; stored in the sidecar.
FEATURE_VERSION = 2


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
    version: int = FEATURE_VERSION

    @property
    def n_features(self) -> int:
        return self.n_mfcc + 2  # MFCCs, ZCR, RMS dB

    @property
    def feature_names(self) -> list[str]:
        return [f"mfcc{i}" for i in range(self.n_mfcc)] + ["zcr", "rms_db"]

    def frames_in(self, n_samples: int) -> int:
        """Number of whole frames in ``n_samples`` samples."""
        if n_samples < self.n_fft:
            return 0
        return (n_samples - self.n_fft) // self.hop_length + 1

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_SETTINGS = FeatureSettings()


def frame_features(samples: np.ndarray, settings: FeatureSettings = DEFAULT_SETTINGS) -> np.ndarray:
    """Features of every whole frame in ``samples``: shape ``(n_frames, n_features)``, float32."""
    y = np.ascontiguousarray(samples, dtype=np.float32)
    s = settings
    n_frames = s.frames_in(len(y))
    if n_frames == 0:
        return np.zeros((0, s.n_features), dtype=np.float32)
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=s.sample_rate,
        n_fft=s.n_fft,
        hop_length=s.hop_length,
        n_mels=s.n_mels,
        fmin=s.fmin,
        fmax=s.fmax,
        center=False,
    )
    # top_db=None: librosa's default clips at 80 dB below the loudest value of the array it
    # is given, which would make a frame's features depend on its neighbours.
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=s.n_mfcc)
    zcr = librosa.feature.zero_crossing_rate(
        y, frame_length=s.n_fft, hop_length=s.hop_length, center=False
    )
    rms = librosa.feature.rms(y=y, frame_length=s.n_fft, hop_length=s.hop_length, center=False)
    rms_db = 20.0 * np.log10(np.maximum(rms, 10.0 ** (s.rms_floor_db / 20.0)))
    out = np.concatenate([mfcc, zcr, rms_db], axis=0).T
    return np.ascontiguousarray(out[:n_frames], dtype=np.float32)


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
    """Pay librosa's numba compilation now (about 14 s cold, 1.5 s with a warm cache).

    Call it off the UI thread; afterwards the first real window is as fast as the rest.
    """
    frame_features(np.zeros(settings.n_fft * 4, dtype=np.float32), settings)
