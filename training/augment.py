"""Training-side augmentation: what a new speaker, room, microphone or phone line does.

Built from audiomentations, plus a synthetic room impulse response (exponentially decaying
noise with a random RT60), which needs no impulse-response files. The per-window cepstral
mean normalisation in ``ser_live.features`` cancels a fixed colouring; these augmentations
teach the model what that normalisation cannot remove: noise, reverberation tails, band
limiting (telephony is 300-3400 Hz), lossy codecs, level and voice changes.

Level is set, not shifted: the last step puts the clip's speech level (its loudest fifth of
30 ms frames) at a random level the engine's voice-activity detector accepts. The features
are level-invariant (per-window normalisation), so what level changes is which frames the
VAD passes; a blind gain pushed about a third of the quiet RAVDESS copies below the VAD's
floor, where they gave one near-silent window labelled with an emotion.
"""

from __future__ import annotations

import io
import random

import audiomentations as am
import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve

from ser_live import SAMPLE_RATE
from ser_live.vad import FRAME_SAMPLES

#: Range of the speech level (dBFS of the loudest fifth of frames) an augmented copy gets.
#: At -40 dBFS and above, every RAVDESS and TESS clip keeps at least one window that is
#: half speech for the engine's VAD (measured: 1 clip in 1440 below that, against 3.3% of
#: the clean RAVDESS clips as recorded); -14 dBFS is a loud headset, peaks may clip.
SPEECH_LEVEL_DB = (-40.0, -14.0)


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


def speech_level_db(samples: np.ndarray) -> float:
    """Level of the loudest fifth of the 30 ms frames, dBFS: speech, not the pauses.

    -inf for digital silence (nothing above -190 dBFS) or less than one frame.
    """
    n = len(samples) // FRAME_SAMPLES
    if n == 0:
        return -np.inf
    energy = np.mean(samples[: n * FRAME_SAMPLES].reshape(n, FRAME_SAMPLES) ** 2.0, axis=1)
    loudest = np.sort(energy)[-max(1, n // 5) :].mean()
    return float(10.0 * np.log10(loudest)) if loudest > 1e-19 else -np.inf


def set_speech_level(samples: np.ndarray, target_db: float) -> np.ndarray:
    level_db = speech_level_db(samples)
    if not np.isfinite(level_db):  # silence has no level to set
        return samples.astype(np.float32)
    return (samples * 10.0 ** ((target_db - level_db) / 20.0)).astype(np.float32)


def codec_round_trip(
    samples: np.ndarray, fmt: str, subtype: str, compression_level: float
) -> np.ndarray:
    """Encode with one of libsndfile's lossy codecs and decode again, at the input's length.

    MP3 (``"MP3", "MPEG_LAYER_III"``, LAME) for 16 kHz mono speech: level 0.3 gives about
    41 kbit/s, 0.6 about 24 and 0.99 about 15; libsndfile 1.2 refuses levels above 0.9999.
    Opus (``"OGG", "OPUS"``): 0.98 gives about 12 kbit/s.
    """
    buffer = io.BytesIO()
    sf.write(
        buffer,
        samples,
        SAMPLE_RATE,
        format=fmt,
        subtype=subtype,
        compression_level=compression_level,
    )
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32")
    # A decoder may return a few samples more or less than went in.
    out = np.zeros(len(samples), dtype=np.float32)
    out[: min(len(out), len(decoded))] = decoded[: len(out)]
    return out


#: The pitch shift (semitones, either way) of a copy meant as a new voice: at least a
#: semitone, so that no such copy is the clip's own voice again.
NEW_VOICE_SEMITONES = (1.0, 4.0)


class Augmenter:
    """A clip's augmented copies.

    ``new_voice``: every copy is shifted in pitch (``NEW_VOICE_SEMITONES``; the formants
    move with it, as between speakers), for the extra copies of an emotion that few
    speakers teach (``training.windows.thin_class_copies``). Otherwise half the copies are
    shifted by up to 3 semitones.
    """

    def __init__(self, new_voice: bool = False) -> None:
        low, high = NEW_VOICE_SEMITONES
        pitch = (
            am.OneOf(
                [
                    am.PitchShift(min_semitones=-high, max_semitones=-low, p=1.0),
                    am.PitchShift(min_semitones=low, max_semitones=high, p=1.0),
                ],
                p=1.0,
            )
            if new_voice
            else am.PitchShift(min_semitones=-3, max_semitones=3, p=0.5)
        )
        self._chain = am.Compose(
            [
                pitch,
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
        out = np.clip(set_speech_level(out, rng.uniform(*SPEECH_LEVEL_DB)), -1.0, 1.0)
        if rng.random() < 0.2:  # recorded calls are often low-bit-rate MP3
            out = codec_round_trip(out, "MP3", "MPEG_LAYER_III", rng.uniform(0.3, 0.99))
        return out.astype(np.float32)
