"""Exploratory plots of the corpora a run trains on."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ser_live import EMOTIONS
from ser_live.audio_io import load_audio
from ser_live.features import DEFAULT_SETTINGS, log_mel_spectrum
from training.corpora import Utterance


def exploratory_plots(utterances: list[Utterance], out_dir: Path) -> None:
    import librosa
    import librosa.display
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf

    corpora = sorted({u.corpus for u in utterances})
    counts = Counter((u.corpus, u.emotion) for u in utterances)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / max(len(corpora), 1)
    for k, corpus in enumerate(corpora):
        ax.bar(
            np.arange(len(EMOTIONS)) + k * width,
            [counts[(corpus, e)] for e in EMOTIONS],
            width,
            label=corpus,
        )
    ax.set_xticks(np.arange(len(EMOTIONS)) + width * (len(corpora) - 1) / 2, EMOTIONS)
    ax.set_ylabel("clips")
    ax.set_title("clips per emotion and corpus (RAVDESS neutral includes calm)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "class_counts.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for corpus in corpora:
        durations = [sf.info(u.path).duration for u in utterances if u.corpus == corpus]
        ax.hist(durations, bins=40, alpha=0.6, label=corpus)
    ax.set_xlabel("clip duration (s)")
    ax.set_ylabel("clips")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "durations.png", dpi=100)
    plt.close(fig)

    st = DEFAULT_SETTINGS
    examples = {}
    for u in utterances:
        examples.setdefault(u.emotion, u)
    fig, axes = plt.subplots(len(EMOTIONS), 2, figsize=(11, 2.0 * len(EMOTIONS)))
    for row, emotion in enumerate(EMOTIONS):
        if emotion not in examples:
            continue
        u = examples[emotion]
        y = load_audio(u.path)
        axes[row, 0].plot(np.arange(len(y)) / st.sample_rate, y, lw=0.4)
        axes[row, 0].set_ylabel(emotion)
        axes[row, 0].set_title(Path(u.path).name, fontsize=7)
        mel = log_mel_spectrum(y).T  # what the MFCCs are taken from, in dB
        mel = np.maximum(mel, mel.max() - 80.0)  # the usual 80 dB of display range
        librosa.display.specshow(
            mel,
            sr=st.sample_rate,
            hop_length=st.hop_length,
            fmin=st.fmin,
            fmax=st.fmax,
            x_axis="time",
            y_axis="mel",
            ax=axes[row, 1],
        )
    fig.tight_layout()
    fig.savefig(out_dir / "examples.png", dpi=80)
    plt.close(fig)
