"""What every exported model records: its sidecar, its licence; and the data subsets."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

from ser_live import EMOTIONS, SAMPLE_RATE, __version__
from ser_live.calibration import PRIOR_FRAMES
from ser_live.features import DEFAULT_SETTINGS, Standardiser
from ser_live.model import ModelSpec
from training.config import TrainConfig
from training.corpora import Utterance
from training.environment import training_libraries
from training.models import CNN_ARCHITECTURES


def subset(utterances: list[Utterance], per_speaker: int | None) -> list[Utterance]:
    """At most ``per_speaker`` clips of each speaker, spread evenly over the emotions."""
    if per_speaker is None:
        return utterances
    out: list[Utterance] = []
    by_speaker: dict[str, list[Utterance]] = {}
    for u in utterances:
        by_speaker.setdefault(u.speaker, []).append(u)
    for clips in by_speaker.values():
        by_emotion: dict[str, list[Utterance]] = {}
        for u in clips:
            by_emotion.setdefault(u.emotion, []).append(u)
        rounds = [
            clips_e[i]
            for i in range(max(map(len, by_emotion.values())))
            for clips_e in by_emotion.values()
            if i < len(clips_e)
        ]
        out.extend(rounds[:per_speaker])
    return sorted(out, key=lambda u: u.path)


def member_kind(cfg: TrainConfig, member: int) -> str:
    """The model kind (see ``NEURAL_MODELS``) of network ``member`` of the average."""
    return CNN_ARCHITECTURES[cfg.cnn_architectures[member % len(cfg.cnn_architectures)]]


#: The licence of each corpus; a model trained on them inherits the non-commercial terms.
CORPUS_LICENCES = {
    "ravdess": "RAVDESS, CC BY-NC-SA 4.0",
    "tess": "TESS, CC BY-NC-ND 4.0",
    "nemo": "nEMO, CC BY-NC-SA 4.0",
    "korean": "emotiontts open db sample, CC BY-NC-SA (research only)",
    "emospeech": "Indian EmoSpeech, CC BY-NC-SA 4.0",
}


def training_licence(corpora: list[str]) -> str:
    return (
        "CC BY-NC-SA 4.0, non-commercial use only (trained on "
        + "; ".join(CORPUS_LICENCES[c] for c in corpora)
        + ")"
    )


def model_spec(
    cfg: TrainConfig,
    standardiser: Standardiser,
    input_shape: tuple[int, ...],
    n_windows: int,
    utterances: list[Utterance],
    epochs: dict[str, int],
    summary: dict,
) -> ModelSpec:
    """The sidecar: everything the runtime needs to feed the model as it was trained."""
    calibration: dict = {"prior_frames": PRIOR_FRAMES}
    return ModelSpec(
        labels=list(EMOTIONS),
        sample_rate=SAMPLE_RATE,
        window_s=cfg.window_s,
        hop_s=cfg.hop_s,
        min_speech_ratio=cfg.min_speech_ratio,
        vad={
            "aggressiveness": cfg.vad_aggressiveness,
            "hangover_frames": cfg.vad_hangover_frames,
            "min_level_db": cfg.vad_min_level_db,
            "level_target_db": cfg.vad_level_target_db,
        },
        features=DEFAULT_SETTINGS.to_dict(),
        normalisation={
            "per_window": "cepstral-mean-and-level",
            "speaker_calibration": calibration,
            "global": standardiser.to_dict(),
        },
        input_shape=list(input_shape),
        voice_shifts=list(cfg.voice_shifts),
        model_version=dt.date.today().isoformat(),
        training={
            "ser_live_version": __version__,
            "corpora": sorted({u.corpus for u in utterances}),
            "clips": len(utterances),
            "speakers": len({u.speaker for u in utterances}),
            "windows": n_windows,
            "epochs": epochs,
            "config": asdict(cfg),
            # The same recipe with other library versions gives other networks.
            "libraries": training_libraries(),
        },
        metrics=summary,
        licence=training_licence(sorted({u.corpus for u in utterances})),
    )
