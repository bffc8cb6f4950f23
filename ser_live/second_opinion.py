"""A second opinion per phrase: the Dusha network, heard once a phrase ends, fused with ours.

The Dusha network (SberDevices, 2022; ``models/dusha_ser.onnx``, its licence and credit in
``models/dusha_ser.LICENSE.txt``) was trained on about 300 h of Russian crowd-sourced and
podcast speech: other speakers, language and microphones than our corpora, so its errors
differ from ours. It hears a whole phrase (no fixed window) and says one of four emotions:
angry, sad, neutral, positive (our happy). It is used **as it is**: the ONNX file as
published in ONNX form, never fine-tuned, quantised or distilled (its licence is
share-alike); ONNX Runtime runs it, since LiteRT cannot read ONNX.

- **Features** (``DushaFeatures``): its training recipe exactly, in NumPy: 16 kHz mono,
  power mel spectrogram (n_fft 320, hop 160, 64 Slaney mel bands, centred with reflect
  padding, as ``librosa.feature.melspectrogram``), then decibels relative to the phrase's
  loudest bin with an 80 dB floor (``librosa.power_to_db(S, ref=np.max)``). The sidecar
  ``dusha_ser.json`` records these settings; the runtime refuses a sidecar whose settings
  differ from this code's, or a file whose SHA-256 differs from the sidecar's.
- **Fusion** (``fuse``): at the four emotions both models have, the phrase's probabilities
  become ``(1 - w)`` ours and ``w`` Dusha's, each renormalised over the four, and scaled
  back to the mass ours gave them; fearful, disgust and surprised keep our probabilities.
  ``w`` is the sidecar's ``weight``, chosen on the leave-one-corpus-out yardstick
  (models/README.md).

The engine runs it once per phrase, off the per-window path (``ser_live.engine``).

Threads: one ``SecondOpinion`` may serve several engines at once (the app's two sides
share one), each calling ``probabilities`` from its own phrase thread: ``DushaFeatures``
keeps no state between calls and an ONNX Runtime session may run on several threads.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser_live import EMOTIONS, SAMPLE_RATE
from ser_live.allocator import give_back_freed_memory
from ser_live.dsp import frame, hann_window, mel_filterbank, power_spectrum
from ser_live.errors import ModelError
from ser_live.model import read_sidecar

SIDECAR_FORMAT = "ser-live-second-opinion"
#: Beside the default model: ``models/dusha_ser.onnx`` and its sidecar.
DEFAULT_SECOND_OPINION = Path(__file__).resolve().parent / "models" / "dusha_ser.onnx"
#: Dusha's outputs, in order, as our emotions.
DUSHA_LABELS = ("angry", "sad", "neutral", "happy")
#: Its training recipe (``librosa.feature.melspectrogram`` defaults but these).
FEATURES = {
    "sample_rate": SAMPLE_RATE,
    "n_fft": 320,
    "hop_length": 160,
    "n_mels": 64,
    "mel_scale": "slaney",
    "center": "reflect",
    "db_reference": "max",
    "top_db": 80.0,
}


class DushaFeatures:
    """The Dusha network's input for a phrase: ``(64, T)`` decibels, loudest bin 0 dB."""

    def __init__(self) -> None:
        n_fft = FEATURES["n_fft"]
        self._window = hann_window(n_fft)
        self._mel = mel_filterbank(SAMPLE_RATE, n_fft, FEATURES["n_mels"], 0.0, SAMPLE_RATE / 2)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        n_fft, hop = FEATURES["n_fft"], FEATURES["hop_length"]
        y = np.asarray(samples, dtype=np.float32)
        if len(y) <= n_fft // 2:  # reflect padding needs more than half a frame
            y = np.pad(y, (0, n_fft // 2 + 1 - len(y)))
        y = np.pad(y, n_fft // 2, mode="reflect")
        n_frames = 1 + (len(y) - n_fft) // hop
        power = power_spectrum(frame(y, n_fft, hop, n_frames), self._window)
        mel = (power @ self._mel.T).T  # (n_mels, T)
        db = 10.0 * np.log10(np.maximum(mel, 1e-10))
        db -= 10.0 * np.log10(max(1e-10, float(mel.max())))
        return np.maximum(db, db.max() - FEATURES["top_db"]).astype(np.float32)


def fuse(ours: np.ndarray, theirs: np.ndarray, weight: float) -> np.ndarray:
    """Our seven probabilities with Dusha's four (``DUSHA_LABELS`` order) at ``weight``."""
    ours = np.asarray(ours, dtype=np.float64)
    index = [EMOTIONS.index(e) for e in DUSHA_LABELS]
    mass = float(ours[index].sum())
    out = ours.copy()
    if mass > 0:
        mixed = (1.0 - weight) * ours[index] / mass + weight * np.asarray(theirs, np.float64)
        out[index] = mass * mixed
    return out.astype(np.float32)


@dataclass(frozen=True)
class SecondOpinionSpec:
    """The sidecar ``dusha_ser.json``."""

    sha256: str
    features: dict
    labels: list[str]
    weight: float
    min_phrase_s: float
    licence: str

    @classmethod
    def read(cls, path: Path) -> SecondOpinionSpec:
        data = read_sidecar(path, "second-opinion", SIDECAR_FORMAT)
        try:
            spec = cls(
                sha256=str(data["sha256"]),
                features=dict(data["features"]),
                labels=list(data["labels"]),
                weight=float(data["weight"]),
                min_phrase_s=float(data["min_phrase_s"]),
                licence=str(data.get("licence", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: incomplete second-opinion sidecar ({exc})") from None
        problems = []
        if spec.features != FEATURES:
            problems.append(f"feature settings {spec.features} differ from this code's")
        if spec.labels != list(DUSHA_LABELS):
            problems.append(f"labels {spec.labels} are not {list(DUSHA_LABELS)}")
        if not 0.0 <= spec.weight <= 1.0 or spec.min_phrase_s < 0:
            problems.append("weight must be in [0, 1] and min_phrase_s not negative")
        if problems:
            raise ModelError(
                f"second opinion does not match this ser-live ({path}): " + "; ".join(problems)
            )
        return spec


class SecondOpinion:
    """The Dusha network on whole phrases, through ONNX Runtime on one thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.spec = SecondOpinionSpec.read(path.with_suffix(".json"))
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"second-opinion model unreadable: {path} ({exc})") from None
        if hashlib.sha256(blob).hexdigest() != self.spec.sha256:
            raise ModelError(f"{path}: not the file its sidecar describes (SHA-256 differs)")
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError(
                "the second opinion needs ONNX Runtime: pip install onnxruntime"
            ) from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one core per engine, as the LiteRT networks
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Every phrase has its own length, so its buffers too: ONNX Runtime's arena keeps
        # the largest it has seen per shape plan, and glibc keeps what is freed of the
        # rest. Without the arena and with the heap trimmed after each phrase, an hour
        # live stays at 150-170 MB (docs/benchmarks.md), for a slower phrase off the
        # per-window path.
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        try:
            self._session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"second-opinion model unreadable: {path} ({exc})") from None
        self._input = self._session.get_inputs()[0].name
        self.features = DushaFeatures()

    @property
    def weight(self) -> float:
        return self.spec.weight

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """Dusha's four probabilities (``DUSHA_LABELS``) for one phrase of 16 kHz audio."""
        mel = self.features(samples)
        logits = self._session.run(None, {self._input: mel[np.newaxis, np.newaxis]})[0][0]
        give_back_freed_memory()
        e = np.exp(logits - logits.max())
        return (e / e.sum()).astype(np.float32)

    def warm_up(self) -> None:
        self.probabilities(np.zeros(SAMPLE_RATE, dtype=np.float32))


def load_second_opinion(path: str | Path | None = None) -> SecondOpinion:
    """The second opinion at ``path`` (default: beside the default model); ``ModelError``
    with one line when it is missing or unfit."""
    path = Path(path) if path else DEFAULT_SECOND_OPINION
    if not path.exists():
        raise ModelError(f"second-opinion model not found: {path}")
    return SecondOpinion(path)


@dataclass(frozen=True)
class PhraseVerdict:
    """What the engine says about one phrase once it has ended: the mean of its speech
    windows' probabilities (``ours``), the second opinion's (``theirs``, None where there
    is none or the phrase was too short for it) and the two fused (``probabilities``)."""

    start_s: float
    end_s: float
    n_windows: int
    ours: np.ndarray
    theirs: np.ndarray | None
    probabilities: np.ndarray

    @property
    def emotion(self) -> str:
        return EMOTIONS[int(np.argmax(self.probabilities))]

    @property
    def confidence(self) -> float:
        return float(np.max(self.probabilities))


class PhraseOpinions:
    """The phrase being heard (its speech windows' probabilities, and its audio where a
    second opinion will hear it) and the verdicts of those that have ended.

    With ``background=True`` (live) the second opinion runs on a thread of its own, so a
    phrase's end never delays the next window; ``take`` returns verdicts as they are
    ready (typically tens of milliseconds after the phrase) and ``finish`` waits for the
    rest. Otherwise (files) each verdict is made when its phrase ends. The engine's
    thread owns this object; the worker thread only runs ``SecondOpinion.probabilities``.
    """

    def __init__(self, opinion: SecondOpinion | None, background: bool, max_windows: int) -> None:
        from collections import deque

        from ser_live.voice_shifts import StreamTail

        self.opinion = opinion
        self.max_windows = max_windows
        self._audio = StreamTail() if opinion is not None else None
        self.background = opinion is not None and background
        self._pool = None  # made on first use, and again after ``shutdown``
        self._pending: deque = deque()  # verdicts (or futures of them), in phrase order
        self._reset_phrase()

    def _reset_phrase(self) -> None:
        self._start_s: float | None = None
        self._end_s = 0.0
        self._sum: np.ndarray | None = None
        self._n = 0

    def reset(self) -> None:
        """A new stream: the phrase so far and verdicts not taken are forgotten."""
        self._reset_phrase()
        self._pending.clear()
        if self._audio is not None:
            self._audio.reset()

    def feed_audio(self, samples: np.ndarray) -> None:
        if self._audio is not None:
            self._audio.feed(samples)

    def forget_before(self, stream_s: float) -> None:
        """No window starting before ``stream_s`` is still to come: keep the audio from
        there on, and the current phrase's."""
        if self._audio is None:
            return
        keep = round(stream_s * SAMPLE_RATE)
        if self._start_s is not None:
            keep = min(keep, round(self._start_s * SAMPLE_RATE))
        self._audio.forget_before(keep)

    def add(self, start_s: float, end_s: float, probabilities: np.ndarray) -> None:
        """A speech window of the phrase (closes the phrase first at its longest)."""
        if self._n >= self.max_windows:
            self.close()
        if self._start_s is None:
            self._start_s = start_s
        self._end_s = end_s
        p = np.asarray(probabilities, dtype=np.float64)
        self._sum = p if self._sum is None else self._sum + p
        self._n += 1

    def close(self) -> None:
        """The phrase has ended (a pause, its longest, or the stream's end)."""
        if self._start_s is None:
            return
        start_s, end_s, n = self._start_s, self._end_s, self._n
        ours = (self._sum / n).astype(np.float32)
        audio = None
        if self.opinion is not None and end_s - start_s >= self.opinion.spec.min_phrase_s:
            first = max(round(start_s * SAMPLE_RATE), self._audio.first)
            audio = self._audio.span(first, min(round(end_s * SAMPLE_RATE), self._audio.end))
            audio = audio.copy()  # the tail moves on while a worker hears it
        self._reset_phrase()
        if audio is None or len(audio) == 0:
            self._pending.append(PhraseVerdict(start_s, end_s, n, ours, None, ours))
        elif self.background:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(1, thread_name_prefix="second-opinion")
            self._pending.append(self._pool.submit(self._verdict, start_s, end_s, n, ours, audio))
        else:
            self._pending.append(self._verdict(start_s, end_s, n, ours, audio))

    def _verdict(
        self, start_s: float, end_s: float, n: int, ours: np.ndarray, audio: np.ndarray
    ) -> PhraseVerdict:
        theirs = self.opinion.probabilities(audio)
        return PhraseVerdict(
            start_s, end_s, n, ours, theirs, fuse(ours, theirs, self.opinion.weight)
        )

    def take(self, wait: bool = False) -> list[PhraseVerdict]:
        """The verdicts ready now, in phrase order (``wait``: all of them)."""
        out = []
        while self._pending:
            head = self._pending[0]
            if not isinstance(head, PhraseVerdict):
                if not (wait or head.done()):
                    break
                head = head.result()
            self._pending.popleft()
            out.append(head)
        return out

    def shutdown(self) -> None:
        """Stop the worker thread (verdicts not taken yet are still made first)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
