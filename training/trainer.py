"""Training and exporting the held-out and final models of a leave-one-corpus-out run."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ser_live.features import Standardiser
from ser_live.model import DEFAULT_MODEL
from training import log
from training.config import TrainConfig
from training.corpora import Utterance
from training.scoring import label_sets

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = DEFAULT_MODEL.name


@dataclass
class PendingModel:
    """A model whose fits are queued: where it goes and what it was trained on."""

    out_dir: Path
    train_mask: np.ndarray
    standardiser: Standardiser
    futures: list
    validation_speakers: set[str] = field(default_factory=set)  # kept for early stopping


@dataclass
class Trainer:
    """Queues a model's fits on the shared scheduler, and exports it when they are done."""

    cfg: TrainConfig
    utterances: list[Utterance]
    data: dict[str, np.ndarray]
    windows_file: Path
    scheduler: object
    #: A model (with its sidecar) every exported model carries as its member: its
    #: probabilities are averaged with the new network's (``ModelSpec.members``).
    member: Path | None = None
    #: Every clip's window summaries as the engine hears them: each exported model gets an
    #: utterance head trained on its training clips (``training.utterance_head``).
    head_summaries: list | None = None

    def queue(
        self, name: str, train_mask: np.ndarray, val_mask: np.ndarray | None, out_dir: Path
    ) -> PendingModel:
        from training.jobs import FitJob
        from training.spec import member_kind

        x, clip = self.data["x"], self.data["clip"]
        labels = np.array([u.label for u in self.utterances])[clip]
        standardiser = Standardiser.fit(x[train_mask])
        sets = label_sets(self.utterances)[clip] if self.cfg.partial_labels else None
        out_dir.mkdir(parents=True, exist_ok=True)
        futures = []
        for member in range(self.cfg.cnn_members):
            job = FitJob(
                name=f"{name} member {member + 1}",
                kind=member_kind(self.cfg, member),
                cfg=replace(self.cfg, seed=self.cfg.seed + member),
                windows=self.windows_file,
                standardiser=standardiser,
                train=np.flatnonzero(train_mask),
                y_train=labels[train_mask],
                checkpoint=out_dir / f"member{member + 1}.keras",
                val=None if val_mask is None else np.flatnonzero(val_mask),
                y_val=None if val_mask is None else labels[val_mask],
                label_sets=None if sets is None else sets[train_mask],
                val_label_sets=None if sets is None or val_mask is None else sets[val_mask],
            )
            futures.append(self.scheduler.submit(job, priority=0))
        validation = (
            set()
            if val_mask is None
            else {self.utterances[c].speaker for c in np.unique(clip[val_mask])}
        )
        return PendingModel(out_dir, train_mask, standardiser, futures, validation)

    def export(self, pending: PendingModel, metrics: dict) -> tuple[Path, list[int]]:
        """Wait for the fits, average them into one int8 model, write it with its sidecar."""
        import keras

        from training.export import calibration_windows, to_int8_tflite, write_model
        from training.neural import average_of
        from training.spec import model_spec

        done = [f.result() for f in pending.futures]
        # compile=False: a partial-label fit's loss is a plain function, not needed here.
        models = [keras.models.load_model(r.job.checkpoint, compile=False) for r in done]
        x, train_mask = self.data["x"], pending.train_mask
        rows = calibration_windows(np.flatnonzero(train_mask), self.cfg.seed)
        int8 = to_int8_tflite(average_of(models), pending.standardiser(x[rows]))
        trained_on = [self.utterances[c] for c in np.unique(self.data["clip"][train_mask])]
        epochs = {r.job.kind: r.best_epoch for r in done}
        spec = model_spec(
            self.cfg,
            pending.standardiser,
            x.shape[1:],
            int(train_mask.sum()),
            trained_on,
            epochs,
            metrics,
        )
        spec.voice_shifts = []  # scored without: the engine's default path
        if self.member is not None:
            for source in (self.member, self.member.with_suffix(".json")):
                shutil.copy(source, pending.out_dir / source.name)
            spec.members = [self.member.name]
        write_model(pending.out_dir / MODEL_NAME, int8, spec.to_json())
        if self.head_summaries is not None:
            from training.utterance_head import attach, fit_head

            # Every clip of the speakers the network heard, those it kept for early
            # stopping too (the head needs none): the final model's head is then the one
            # ``python -m training.utterance_head`` fits on all the data.
            heard = {u.speaker for u in trained_on} | pending.validation_speakers
            clips = [i for i, u in enumerate(self.utterances) if u.speaker in heard]
            head = fit_head(
                self.head_summaries, self.utterances, clips, self.cfg.seed, self.cfg.hop_s
            )
            attach(pending.out_dir / MODEL_NAME, head, [self.utterances[i] for i in clips])
        return pending.out_dir / MODEL_NAME, [r.best_epoch for r in done]


def install(model: Path) -> None:
    """The model, its members and their sidecars into ``models/``."""
    from ser_live.model import ModelSpec

    names = [model.name, *ModelSpec.read(model.with_suffix(".json")).members]
    for name in names:
        for source in (model.parent / name, (model.parent / name).with_suffix(".json")):
            shutil.copy(source, ROOT / "models" / source.name)
    log(f"installed models/{model.name} ({model.stat().st_size / 1024:.0f} KiB) with {names[1:]}")
