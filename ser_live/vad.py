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

    webrtcvad also judges by level: speech whose loudest 30 ms frames sit near -45 dBFS (a
    quiet actor, a phone held away) is mostly not speech to it, although it is 20 dB above
    the floor. With ``level_target_db`` set, each frame is raised, before webrtcvad hears
    it, by the gain that brings the recent loudest frame level to that target (at most
    ``max_gain_db``, never lowered). The recent loudest level is the frame's own level or
    the previous one less ``release_db_per_s`` per second of frames, whichever is higher,
    so a loud onset is never over-amplified and a quiet stretch is raised within a
    second. The floor still applies to the level as recorded, so room tone stays silence;
    the features do not see the gain (they are level-normalised per window anyway).
    """

    def __init__(
        self,
        aggressiveness: int = 2,
        hangover_frames: int = 8,
        min_level_db: float = -65.0,
        level_target_db: float | None = None,
        max_gain_db: float = 30.0,
        release_db_per_s: float = 2.0,
    ) -> None:
        self.hangover_frames = hangover_frames
        self.min_level_db = min_level_db
        self.aggressiveness = aggressiveness
        self.level_target_db = level_target_db
        self.max_gain_db = max_gain_db
        self.release_db_per_s = release_db_per_s
        self._min_rms = 10.0 ** (min_level_db / 20.0)
        self._release_per_frame = release_db_per_s * FRAME_MS / 1000.0
        self.reset()

    def fresh(self) -> VoiceActivityDetector:
        """A new detector with these settings and none of this one's history."""
        return VoiceActivityDetector(
            self.aggressiveness,
            self.hangover_frames,
            self.min_level_db,
            self.level_target_db,
            self.max_gain_db,
            self.release_db_per_s,
        )

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
        self._loudest_db = -np.inf  # recent loudest frame level (level_target_db)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Decisions (bool) for every frame completed by ``samples``."""
        data = np.concatenate([self._carry, np.asarray(samples, dtype=np.float32)])
        n_frames = len(data) // FRAME_SAMPLES
        self._carry = data[n_frames * FRAME_SAMPLES :].copy()
        if n_frames == 0:
            return np.zeros(0, dtype=bool)
        frames = data[: n_frames * FRAME_SAMPLES].reshape(n_frames, FRAME_SAMPLES)
        frame_rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
        loud = frame_rms >= self._min_rms
        if self.level_target_db is not None:
            frames = frames * self._gains(frame_rms)[:, np.newaxis]
        pcm = (np.clip(frames, -1.0, 32767 / 32768) * 32768).astype("<i2")
        decisions = np.zeros(n_frames, dtype=bool)
        for i in range(n_frames):
            if loud[i] and self._vad.is_speech(pcm[i].tobytes(), SAMPLE_RATE):
                self._since_speech = 0
            else:
                self._since_speech += 1
            decisions[i] = self._since_speech <= self.hangover_frames
        return decisions

    def _gains(self, frame_rms: np.ndarray) -> np.ndarray:
        """Each frame's linear gain for webrtcvad (see the class docstring), in order."""
        levels = 20.0 * np.log10(np.maximum(frame_rms, 1e-10))
        gains = np.empty(len(levels), dtype=np.float32)
        loudest = self._loudest_db
        for i, level in enumerate(levels):
            loudest = max(float(level), loudest - self._release_per_frame)
            gain_db = min(max(self.level_target_db - loudest, 0.0), self.max_gain_db)
            gains[i] = 10.0 ** (gain_db / 20.0)
        self._loudest_db = loudest
        return gains
