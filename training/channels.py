"""Recording channels a clip can be passed through: a phone line, VoIP and MP3 codecs,
noise, reverberation and level changes (``training.loco_robustness``).

The codecs are real encoders (libsndfile's). Opus was never part of training augmentation,
so it is an unseen channel; MP3 is (one training copy in five), as are noise,
reverberation and telephone-band filtering, at other settings.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import soxr
from scipy.signal import butter, sosfilt

from ser_live import SAMPLE_RATE
from training.augment import codec_round_trip, reverberate, room_tail


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def _phone_line(x: np.ndarray) -> np.ndarray:
    narrow = soxr.resample(x, SAMPLE_RATE, 8000)
    band = sosfilt(butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos"), narrow)
    return soxr.resample(band.astype(np.float32), 8000, SAMPLE_RATE)


def _pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    return np.fft.irfft(spectrum, n)


def _noise(x: np.ndarray, speech_rms: float, snr_db: float, rng) -> np.ndarray:
    noise = _pink_noise(len(x), rng)
    return x + noise * (speech_rms / rms(noise) * 10 ** (-snr_db / 20))


def _reverb(x: np.ndarray, rt60: float, rng) -> np.ndarray:
    ir = room_tail(rt60, rng)
    ir[0] = 2.0
    return reverberate(x, ir)


#: name -> (what it is, the channel: (placed clip, the clip's own speech RMS, rng) -> audio)
CONDITIONS: dict[str, tuple[str, Callable]] = {
    "clean": ("the test clips as recorded", lambda x, s, r: x),
    "louder 10 dB": ("10 dB louder, clipped at full scale", lambda x, s, r: x * 10**0.5),
    "quieter 10 dB": ("10 dB quieter", lambda x, s, r: x * 10**-0.5),
    "quieter 30 dB": ("30 dB quieter: below the VAD's floor", lambda x, s, r: x * 10**-1.5),
    "phone line": ("8 kHz, 300-3400 Hz band", lambda x, s, r: _phone_line(x)),
    "opus 12 kbps": (
        "Opus VoIP codec at about 12 kbit/s",
        lambda x, s, r: codec_round_trip(x, "OGG", "OPUS", 0.98),
    ),
    "mp3 20 kbps": (
        "MP3 at about 20 kbit/s",
        lambda x, s, r: codec_round_trip(x, "MP3", "MPEG_LAYER_III", 0.9),
    ),
    "noise 10 dB": ("pink noise at 10 dB SNR", lambda x, s, r: _noise(x, s, 10.0, r)),
    "reverb 0.6 s": ("a reverberant room, RT60 0.6 s", lambda x, s, r: _reverb(x, 0.6, r)),
    "call": (
        "pink noise at 20 dB SNR, then a phone line, then Opus at 12 kbit/s",
        lambda x, s, r: codec_round_trip(_phone_line(_noise(x, s, 20.0, r)), "OGG", "OPUS", 0.98),
    ),
}


def add_conditions_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--conditions",
        default=",".join(CONDITIONS),
        help=f"comma-separated subset of: {', '.join(CONDITIONS)}",
    )


def chosen_conditions(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The ``--conditions`` asked for; a one-line usage error for one that does not exist."""
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        parser.error(f"unknown condition: {', '.join(unknown)}")
    return conditions
