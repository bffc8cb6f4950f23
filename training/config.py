"""One configuration shared by every training step; each run saves a copy of it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Where ``training.loco`` and ``training.identity_dims`` cache windows by default.
CACHE_DIR = Path(__file__).resolve().parent / "cache"


@dataclass
class TrainConfig:
    seed: int = 1234
    # The engine's windowing: the sidecar hands these to the runtime.
    window_s: float = 2.0
    hop_s: float = 0.5
    min_speech_ratio: float = 0.5
    vad_aggressiveness: int = 2
    vad_hangover_frames: int = 8
    # Frames below this level are never speech. At -55 dBFS, 6.5% of the (quiet) RAVDESS
    # clips had no window that was half speech; at -65, 3.3%. webrtcvad itself did not fire
    # on steady white, pink or brown noise at any level from -70 to -40 dBFS.
    vad_min_level_db: float = -65.0
    # Quiet speech raised for webrtcvad (ser_live.vad): the recent loudest 30 ms frame
    # brought up to this level, never lowered, at most 30 dB. With the shipped model: 13
    # quiet RAVDESS clips (peaks at -43 to -51 dBFS) gave no verdict, now 2; every corpus's
    # UAR stayed or rose. -36 because webrtcvad itself calls steady noise speech from about
    # -33 dBFS up (pink noise; white from -27): a target of -20 raised 13 of the 15
    # EmoSpeech clips without a verdict too, but turned steady noise at -60 dBFS into
    # speech. At -36 no raised noise reaches that level. None: no raising.
    vad_level_target_db: float | None = -36.0
    # Augmented copies of each training clip, besides the clean one.
    n_augment: int = 2
    # At most this many more copies, each a new voice, of the clips of an emotion the
    # training set has few clips of (training.windows.thin_class_copies); 0: none.
    new_voice_copies: int = 0
    # Neural models.
    epochs: int = 60
    batch_size: int = 64
    learning_rate: float = 2e-3
    l2: float = 1e-4
    dropout: float = 0.4
    # Patience 8 stopped some networks before their best epoch (docs/experiments.md).
    patience: int = 12
    # SpecAugment-style masks on training batches: time spans and feature bands blanked.
    spec_augment: bool = True
    # The averaged networks' architectures, member ``m`` taking entry ``m % len``:
    # "conv1d" (over the feature sequence) or "conv2d" (over the log-mel spectrum the
    # MFCCs come from, beside a Conv1D over ZCR, level and pitch).
    cnn_architectures: list[str] = field(default_factory=lambda: ["conv1d", "conv2d"])
    cnn_filters: list[int] = field(default_factory=lambda: [64, 96, 128, 128])
    cnn2d_filters: list[int] = field(default_factory=lambda: [16, 32, 48, 64])
    # The conv2d network's spectrum: mel bands (64, or 32 averaged pairs) and time steps
    # (feature frames averaged together: 4 is 40 ms).
    cnn2d_bands: int = 64
    cnn2d_time_pool: int = 4
    # "avgmax" (average and max over time) or "attention" (a learnt weight per step):
    # attention scored lower on the same folds (docs/experiments.md).
    cnn_pooling: str = "avgmax"
    # Mixup: each training window blended with another of the batch (Beta(a, a) weights,
    # the larger share kept by the window), labels and class weights alike; 0 turns it off.
    mixup_alpha: float = 0.4
    label_smoothing: float = 0.0
    # Multi-corpus training: a window's loss is taken over the emotions its corpus has
    # (training.neural.partial_label_loss). Without it, a corpus that lacks an emotion
    # (EmoSpeech has no sad, disgust or surprise) teaches "this recording setup is not
    # sad", and the network learns to tell corpora apart.
    partial_labels: bool = False
    # The CNN is the average of this many networks, each with its own seed, exported as
    # one int8 graph (the recipe: 1).
    cnn_members: int = 2
    # Test-time voice shifts (semitones; ser_live.voice_shifts), for the previous model
    # alone: each window also scored this much higher and lower, the outputs averaged.
    voice_shifts: list[float] = field(default_factory=lambda: [-2.0, -1.0, 1.0, 2.0])
    workers: int = 2
    # Limit clips per corpus (None: all). For the fixture test and quick looks only.
    max_clips_per_speaker: int | None = None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        """A saved config; settings of research paths since removed are ignored."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in known})
