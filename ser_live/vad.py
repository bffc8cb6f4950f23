"""Streaming voice-activity detection with webrtcvad on a fixed 30 ms frame grid."""

from __future__ import annotations

import numpy as np
import webrtcvad

from ser_live import SAMPLE_RATE

FRAME_MS = 30
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 480


class VoiceActivityDetector:
    """Speech/non-speech decisions for consecutive 30 ms frames of a 16 kHz stream.

    Samples that do not fill a frame are carried to the next call, so decisions do not
    depend on how the stream is chunked. ``hangover_frames`` keeps a frame marked as speech
    for that many frames after webrtcvad last heard speech, which bridges the short pauses
    inside an utterance. Frames quieter than ``min_level_db`` (dBFS) are never speech: it
    stops webrtcvad's low aggressiveness settings from firing on hiss.
    """

    def __init__(
        self,
        aggressiveness: int = 2,
        hangover_frames: int = 8,
        min_level_db: float = -65.0,
    ) -> None:
        self.hangover_frames = hangover_frames
        self.min_level_db = min_level_db
        self.aggressiveness = aggressiveness
        self._min_rms = 10.0 ** (min_level_db / 20.0)
        self.reset()

    def set_aggressiveness(self, level: int) -> None:
        if level not in (0, 1, 2, 3):
            raise ValueError("VAD aggressiveness must be 0, 1, 2 or 3")
        self.aggressiveness = level
        self._vad.set_mode(level)

    def reset(self) -> None:
        # webrtcvad adapts its noise estimates as it goes: a fresh instance forgets them.
        self._vad = webrtcvad.Vad()
        self.set_aggressiveness(self.aggressiveness)
        self._carry = np.zeros(0, dtype=np.float32)
        self._since_speech = self.hangover_frames + 1

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Decisions (bool) for every frame completed by ``samples``."""
        data = np.concatenate([self._carry, np.asarray(samples, dtype=np.float32)])
        n_frames = len(data) // FRAME_SAMPLES
        self._carry = data[n_frames * FRAME_SAMPLES :].copy()
        if n_frames == 0:
            return np.zeros(0, dtype=bool)
        frames = data[: n_frames * FRAME_SAMPLES].reshape(n_frames, FRAME_SAMPLES)
        loud = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)) >= self._min_rms
        pcm = (np.clip(frames, -1.0, 32767 / 32768) * 32768).astype("<i2")
        decisions = np.zeros(n_frames, dtype=bool)
        for i in range(n_frames):
            if loud[i] and self._vad.is_speech(pcm[i].tobytes(), SAMPLE_RATE):
                self._since_speech = 0
            else:
                self._since_speech += 1
            decisions[i] = self._since_speech <= self.hangover_frames
        return decisions
