"""The streaming engine: 16 kHz audio in, one timestamped ``Update`` per window out.

Plain Python/NumPy, no threads of its own: whoever calls ``feed`` owns the engine (the
session's worker thread live, the caller's thread for files).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from ser_live import SAMPLE_RATE
from ser_live.allocator import keep_large_buffers_off_the_heap
from ser_live.calibration import ReferenceGate, SpeakerCalibration, network_calibration
from ser_live.cues import SideActivity
from ser_live.errors import ModelError
from ser_live.features import DEFAULT_SETTINGS
from ser_live.features import warm_up as warm_up_features
from ser_live.frontend import FrontEnd, Window
from ser_live.model import Classifier
from ser_live.second_opinion import PhraseOpinions, PhraseVerdict, SecondOpinion
from ser_live.utterance import MAX_PHRASE_WINDOWS, UtteranceHead, UtteranceTracker, WindowFrames
from ser_live.vad import FRAME_MS, VoiceActivityDetector
from ser_live.verdict_variety import VerdictVariety
from ser_live.voice_shifts import StreamTail, VoiceShifter

#: Speech a short phrase needs beyond the VAD's hangover to be classified at all.
MIN_HEARD_SPEECH_S = 0.2


@dataclass(frozen=True)
class Update:
    """What the engine says about one window of the stream."""

    start_s: float  # stream time of the window
    end_s: float
    speech: bool  # classified: enough speech, or the best window of a short phrase
    speech_ratio: float
    level_db: float
    probabilities: np.ndarray | None  # smoothed over recent speech windows; None in silence
    raw_probabilities: np.ndarray | None  # this window alone
    emotion: str | None
    confidence: float | None
    wall_time: float  # time.time() when the update was made
    compute_ms: float  # features + inference for this window
    # The window's speech-frame statistics where it was classified: what the utterance
    # head hears of it (``ser_live.utterance``)
    frames: WindowFrames | None = None


class Smoother:
    """Mean of the last ``n`` speech windows' probabilities; silence starts afresh.

    A pause long enough to make a silence window usually ends a phrase, and the next phrase
    should not inherit the last one's emotion.
    """

    def __init__(self, n: int = 3) -> None:
        if n < 1:
            raise ValueError("smoothing must be at least 1 window")
        self.n = n
        self._recent: deque[np.ndarray] = deque(maxlen=n)

    def reset(self) -> None:
        self._recent.clear()

    def __call__(self, probabilities: np.ndarray | None) -> np.ndarray | None:
        if probabilities is None:
            self._recent.clear()
            return None
        self._recent.append(probabilities)
        return np.mean(self._recent, axis=0).astype(np.float32)


class Engine:
    def __init__(
        self,
        classifier: Classifier,
        smoothing: int = 3,
        vad_aggressiveness: int | None = None,
        min_speech_ratio: float | None = None,
        voice_shifts: bool = False,
        calibrate: bool = False,
        second_opinion: SecondOpinion | None = None,
        background_phrases: bool = False,
    ) -> None:
        """``voice_shifts=True`` also scores each speech window as the sidecar's
        voice-shifted copies and averages: about ten times the work per speech window,
        for the gain the model card gives. ``calibrate=True`` hears the stream's voice
        relative to its own running statistics (``ser_live.calibration``) and runs the
        model's utterance head if it has one (``ser_live.utterance``): one voice per
        stream; no extra work to speak of. ``second_opinion``: a network that hears each
        phrase once it ends (``ser_live.second_opinion``), its verdict fused with ours
        in the phrase verdicts ``take_phrases`` returns; ``background_phrases``: it runs
        on a thread of its own (live), so that no window waits for it."""
        if background_phrases:  # live: a long session frees and takes large arrays
            keep_large_buffers_off_the_heap()
        spec = classifier.spec
        self.classifier = classifier
        self.labels: list[str] = list(spec.labels)
        vad_cfg = spec.vad
        self.vad = VoiceActivityDetector(
            vad_cfg["aggressiveness"] if vad_aggressiveness is None else vad_aggressiveness,
            vad_cfg["hangover_frames"],
            vad_cfg["min_level_db"],
            vad_cfg.get("level_target_db"),  # absent from models of before 2026-12
        )
        # Who spoke when, for the conversation cues (ser_live.cues); a session may hand the
        # engine another one (a side resumed on a new engine carries on in the same one).
        self.activity = SideActivity(vad_cfg["hangover_frames"])
        # Windows carry their frames' statistics where the utterance head may need them.
        self.frontend = FrontEnd(
            spec.window_s, spec.hop_s, DEFAULT_SETTINGS, self.vad, frame_stats=calibrate
        )
        self.min_speech_ratio = (
            spec.min_speech_ratio if min_speech_ratio is None else min_speech_ratio
        )
        self.smoother = Smoother(smoothing)
        if voice_shifts and not spec.voice_shifts:
            raise ModelError(
                "this model was not measured with voice shifts (its sidecar lists none): "
                "drop --voice-shifts"
            )
        self.shifter = (
            VoiceShifter(spec.voice_shifts, self.frontend.window_samples, DEFAULT_SETTINGS)
            if voice_shifts
            else None
        )
        # One calibration per network of the model (its members have their own training
        # populations); all hear the same windows. A network trained on speaker-normalised
        # windows has one either way; without ``calibrate`` it stays at its prior.
        # The model's sidecar says which speech the voice's statistics learn from (None:
        # all of it) and how far they may move (``max_shift``), for every network.
        setup = spec.normalisation.get("speaker_calibration") or {}
        bound = setup.get("max_shift")
        self._calibrations = [
            network_calibration(n.spec, calibrate, bound) for n in classifier.networks
        ]
        self._present = [c for c in self._calibrations if c is not None]
        self._learning = self._present if calibrate else []  # those that hear this voice
        self._reference = ReferenceGate.from_sidecar(setup, self.labels) if calibrate else None
        # How far the voice's statistics are trusted, from how varied its speech has been
        # as the model hears it without calibration (one more inference per speech window).
        self._variety = VerdictVariety.from_sidecar(setup) if calibrate else None
        # The model's utterance head, if its sidecar has one (``ser_live.utterance``): the
        # phrase against this voice's other phrases, so only a calibrating engine, which
        # has a voice to hear it against, runs it. Heard against the training population
        # instead, it cost 2.9 points held out each clip alone (models/README.md).
        self._utterances = (
            UtteranceTracker(
                UtteranceHead.from_dict(spec.utterance_head),
                True,
                self.frontend.hop_s,
                learns_from=self._reference,
                max_shift=bound,
            )
            if spec.utterance_head and calibrate
            else None
        )
        if self._variety is not None:
            self._trust(self._variety.trust)  # nothing heard yet: none
        self._tail = StreamTail()  # audio for the shifted copies
        self._waiting: deque[Window] = deque()  # the first window, until its copies can be cut
        # A short phrase: windows with some speech but too little to classify, none of
        # them next to a window with enough. Held back until the phrase ends, when its most
        # speech-like window is classified (``_close_phrase``).
        self._phrase: list[Window] = []
        self._phrase_covered = False  # the current phrase already has a speech window
        self.min_phrase_speech_s = self.vad.hangover_frames * FRAME_MS / 1000 + MIN_HEARD_SPEECH_S
        self.max_phrase_windows = round(self.frontend.window_s / self.frontend.hop_s) + 2
        # Phrase verdicts: every speech window belongs to one.
        self.second_opinion = second_opinion
        self._verdicts = PhraseOpinions(second_opinion, background_phrases, MAX_PHRASE_WINDOWS)
        self._next_window_s = 0.0  # where the next window on the grid starts

    @property
    def calibration(self) -> SpeakerCalibration | None:
        """The first network's calibration (None when off); every network's has heard the
        same frames (``frames_heard``)."""
        return self._learning[0] if self._learning else None

    @property
    def window_s(self) -> float:
        return self.frontend.window_s

    @property
    def hop_s(self) -> float:
        return self.frontend.hop_s

    @property
    def stream_s(self) -> float:
        """Seconds of audio fed since reset."""
        return self.frontend.total_samples / SAMPLE_RATE

    @property
    def speech_s(self) -> float:
        return self.frontend.speech_s

    def warm_up(self) -> None:
        """Pay one-off costs now (the filters, the interpreter's first run; well under a
        second). Call it before opening a device, off the UI thread."""
        warm_up_features(self.frontend.settings)
        self.classifier.warm_up()

    def set_smoothing(self, n: int) -> None:
        self.smoother = Smoother(n)

    def reset_calibration(self) -> None:
        """A new voice on this stream (the next caller): calibrate afresh."""
        for calibration in self._present:
            calibration.reset()
        if self._utterances is not None:
            self._utterances.forget_voice()
        if self._variety is not None:
            self._variety.reset()
            self._trust(self._variety.trust)

    def set_vad_aggressiveness(self, level: int) -> None:
        self.vad.set_aggressiveness(level)

    def reset(self, keep_calibration: bool = False) -> None:
        """A new stream; ``keep_calibration``: by the same voice (the next recording of
        one speaker), so the calibration carries on."""
        if self._utterances is not None:
            self._utterances.end_phrase()  # the stream's end ends its phrase
        if self._variety is not None:
            self._variety.end_phrase()
        if not keep_calibration:
            self.reset_calibration()
        self.frontend.reset()
        self._verdicts.reset()
        self._next_window_s = 0.0
        self.smoother.reset()
        self._tail.reset()
        self._waiting.clear()
        self._phrase.clear()
        self._phrase_covered = False

    def feed(self, samples: np.ndarray) -> list[Update]:
        """Add 16 kHz mono float32 samples; return the updates of the windows they complete
        (a window with a little speech may wait until its phrase ends: ``_judge``)."""
        self._verdicts.feed_audio(samples)
        windows = self.frontend.feed(samples)
        self.activity.feed(samples, self.frontend.decisions)
        for window in windows:
            if window.features is not None:  # its frames' pitch, for the voice cue
                self.activity.add_pitch(self.stream_s - window.start_s, window.features[:, -1])
        if windows:
            self._next_window_s = windows[-1].start_s + self.frontend.hop_s
        if self.shifter is None:
            updates = self._judge(windows)
            self._verdicts.forget_before(self._oldest_window_to_come_s())
            return updates
        self._tail.feed(samples)
        self._waiting.extend(windows)
        updates = self._judge(self._pop_waiting(finishing=False))
        self._verdicts.forget_before(self._oldest_window_to_come_s())
        # Keep what the next windows' copies (and any window still waiting) are cut from.
        keep_from = self._tail.end - self.shifter.context_samples
        if self._waiting:
            keep_from = min(keep_from, round(self._waiting[0].start_s * SAMPLE_RATE))
        self._tail.forget_before(keep_from)
        return updates

    def finish(self) -> list[Update]:
        """The end of the stream: the updates still held back. A stream shorter than one
        window is classified as one window padded with room tone; a short phrase at the
        end is judged on its most speech-like window."""
        ready = self._pop_waiting(finishing=True) if self.shifter is not None else []
        padded = self.frontend.pad_short_stream()
        return self._judge([*ready, *([padded] if padded else [])], finishing=True)

    def _oldest_window_to_come_s(self) -> float:
        """Where the oldest window not yet classified starts: one held back in a short
        phrase or waiting for its shifted copies, or else the next on the grid."""
        held = [w.start_s for w in (*self._phrase[:1], *list(self._waiting)[:1])]
        return min([*held, self._next_window_s])

    def take_phrases(self, wait: bool = False) -> list[PhraseVerdict]:
        """The verdicts of the phrases that have ended, in order, as they are ready
        (``wait``: every one, the second opinion's still running too)."""
        return self._verdicts.take(wait)

    def close(self) -> None:
        """Stop the second opinion's thread, if it has one."""
        self._verdicts.shutdown()

    def _pop_waiting(self, finishing: bool) -> list[Window]:
        ready = []
        while self._waiting:
            start = round(self._waiting[0].start_s * SAMPLE_RATE)
            if not (finishing or self.shifter.ready(start, self._tail.end)):
                break
            ready.append(self._waiting.popleft())
        return ready

    def _judge(self, windows: list[Window], finishing: bool = False) -> list[Update]:
        """Updates for ``windows`` in order. A window with enough speech is classified. A
        window with some speech but too little waits while its phrase goes on, unless the
        phrase already has (or gets) a window with enough; a phrase that never does is
        classified on its most speech-like window, so a short utterance ("yes", a word on
        a call) still gets an emotion. Only a window without speech never gets one."""
        updates = []
        for window in windows:
            if window.speech_ratio >= self.min_speech_ratio:
                updates += [self._classify(w, speech=False) for w in self._phrase]
                self._phrase.clear()
                self._phrase_covered = True
                updates.append(self._classify(window, speech=True))
            elif window.speech_ratio > 0 and not self._phrase_covered:
                self._phrase.append(window)
                if len(self._phrase) >= self.max_phrase_windows:
                    updates += self._close_phrase()
            else:
                if window.speech_ratio == 0:
                    updates += self._close_phrase()
                    self._verdicts.close()
                    self._phrase_covered = False
                    if self._utterances is not None:
                        self._utterances.end_phrase()
                    if self._variety is not None:
                        self._variety.end_phrase()
                updates.append(self._classify(window, speech=False))
        if finishing:
            updates += self._close_phrase()
            self._verdicts.close()
        return updates

    def _close_phrase(self) -> list[Update]:
        phrase, self._phrase = self._phrase, []
        if not phrase:
            return []
        best = max(phrase, key=lambda w: w.speech_ratio)
        if best.speech_ratio * self.frontend.window_s < self.min_phrase_speech_s:
            best = None  # a click or a breath: the VAD's hangover, little heard speech
        return [self._classify(w, speech=w is best) for w in phrase]

    def _probabilities(self, window: Window) -> np.ndarray:
        """The model's output for the window, averaged over its voice-shifted copies, and
        with the utterance head's for its phrase."""
        if self._reference is None:
            for calibration in self._learning:  # the window is part of the voice it is heard by
                calibration.update(window.features)
        if self._variety is not None:
            self._variety.add(self._predict(window.features, trust=0.0))
            self._trust(self._variety.trust)
        probs = self._predict(window.features)
        if self._reference is not None and self._reference.admits(probs):
            for calibration in self._learning:
                calibration.update(window.features)
        if self.shifter is not None and not window.padded:
            probs = self._with_shifted_copies(window, probs)
        if self._utterances is not None:
            probs = self._utterances.mix(probs, window.frames)
        return probs

    def _trust(self, trust: float) -> None:
        for calibration in self._learning:
            calibration.trust = trust
        if self._utterances is not None:
            self._utterances.trust = trust

    def _with_shifted_copies(self, window: Window, probs: np.ndarray) -> np.ndarray:
        start = round(window.start_s * SAMPLE_RATE)
        reach = self.shifter.context_samples
        first = max(0, start + self.shifter.window_samples - reach, self._tail.first)
        last = min(self._tail.end, start + reach)  # reach is at least a window
        copies = self.shifter(self._tail.span(first, last), start - first)
        return np.mean([probs, *map(self._predict, copies)], axis=0, dtype=np.float32)

    def _predict(self, features: np.ndarray, trust: float | None = None) -> np.ndarray:
        """The model's probabilities, each network hearing the window calibrated to its own
        training population (or as it is, without calibration); ``trust`` 0: as the
        population would hear it, none of the voice learnt."""
        if not self._present:
            return self.classifier.predict(features)
        return self.classifier.predict_each(
            [features if c is None else c.map(features, trust) for c in self._calibrations]
        )

    def _classify(self, window: Window, speech: bool) -> Update:
        t0 = time.perf_counter()
        raw = self._probabilities(window) if speech else None
        if raw is not None:
            self._verdicts.add(window.start_s, window.end_s, raw)
        smoothed = self.smoother(raw)
        if smoothed is None:
            emotion, confidence = None, None
        else:
            best = int(np.argmax(smoothed))
            emotion, confidence = self.labels[best], float(smoothed[best])
        return Update(
            start_s=window.start_s,
            end_s=window.end_s,
            speech=speech,
            speech_ratio=window.speech_ratio,
            level_db=window.level_db,
            probabilities=smoothed,
            raw_probabilities=raw,
            emotion=emotion,
            confidence=confidence,
            wall_time=time.time(),
            compute_ms=(time.perf_counter() - t0) * 1000.0,
            frames=window.frames if speech else None,
        )
