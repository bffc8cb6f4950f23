"""Reading recordings: any rate, any channel count, as 16 kHz mono float32.

Everything libsndfile reads is accepted (WAV, FLAC, OGG/Vorbis, Opus, MP3 with
libsndfile >= 1.1). Errors become ``AudioFileError`` with a one-line message.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ser_live import SAMPLE_RATE
from ser_live.errors import AudioFileError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")
MIN_RATE, MAX_RATE = 8_000, 192_000
MAX_CHANNELS = 32


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.removeprefix("Error opening ").strip()


class AudioReader:
    """Streams a file as 16 kHz float32 blocks of one channel (or the down-mix)."""

    def __init__(self, path: str | Path, channel: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise AudioFileError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise AudioFileError(f"{self.path}: is a folder, not a recording")
        if self.path.stat().st_size == 0:
            raise AudioFileError(f"{self.path}: empty file")
        try:
            self._file = sf.SoundFile(str(self.path))
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise AudioFileError(
                f"{self.path}: not a readable audio file ({describe_error(exc)})"
            ) from None
        info = self._file
        if not MIN_RATE <= info.samplerate <= MAX_RATE:
            self._file.close()
            raise AudioFileError(f"{self.path}: unsupported sample rate {info.samplerate} Hz")
        if not 1 <= info.channels <= MAX_CHANNELS:
            self._file.close()
            raise AudioFileError(f"{self.path}: unsupported channel count {info.channels}")
        if channel is not None and not 0 <= channel < info.channels:
            self._file.close()
            raise AudioFileError(f"{self.path}: has no channel {channel + 1}")
        self.channel = channel
        self.samplerate = info.samplerate
        self.channels = info.channels
        self.frames = info.frames if info.frames > 0 else None

    @property
    def duration_s(self) -> float | None:
        return None if self.frames is None else self.frames / self.samplerate

    def blocks(self, block_s: float = 0.5) -> Iterator[np.ndarray]:
        """16 kHz mono float32 blocks; raises ``AudioFileError`` if the file breaks off."""
        resampler = (
            None
            if self.samplerate == SAMPLE_RATE
            else soxr.ResampleStream(self.samplerate, SAMPLE_RATE, 1, dtype="float32")
        )
        block = max(1, int(block_s * self.samplerate))
        try:
            while True:
                try:
                    data = self._file.read(block, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError) as exc:
                    raise AudioFileError(
                        f"{self.path}: truncated or corrupt audio ({describe_error(exc)})"
                    ) from None
                if not np.isfinite(data).all():
                    raise AudioFileError(
                        f"{self.path}: NaN or infinite samples (a damaged float recording)"
                    )
                last = len(data) < block
                mono = data.mean(axis=1) if self.channel is None else data[:, self.channel]
                mono = np.ascontiguousarray(mono, dtype=np.float32)
                if resampler is not None:
                    mono = resampler.resample_chunk(mono, last=last)
                if len(mono):
                    yield mono
                if last:
                    return
        finally:
            self._file.close()

    def close(self) -> None:
        self._file.close()


def load_audio(path: str | Path, channel: int | None = None) -> np.ndarray:
    """A whole recording as 16 kHz mono float32."""
    chunks = list(AudioReader(path, channel).blocks(block_s=30.0))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
