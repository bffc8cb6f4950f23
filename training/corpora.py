"""Loaders for RAVDESS and TESS in their original layouts, as WAV or FLAC.

Labels, speakers, gender and intensity come from the file names, never from folder names
(TESS folders are inconsistently named in the common download).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ser_live import EMOTIONS

AUDIO_SUFFIXES = (".wav", ".flac")

RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "neutral",  # calm
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
TESS_EMOTIONS = {
    "neutral": "neutral",
    "happy": "happy",
    "sad": "sad",
    "angry": "angry",
    "fear": "fearful",
    "disgust": "disgust",
    "ps": "surprised",
}
_RAVDESS_NAME = re.compile(r"^03-01-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_TESS_SPEAKER = {"OAF": "OAF", "OA": "OAF", "YAF": "YAF"}  # "OA_bite_neutral" is a typo in TESS


@dataclass(frozen=True)
class Utterance:
    path: str
    corpus: str  # "ravdess" or "tess"
    speaker: str  # "ravdess-01" ... "ravdess-24", "tess-OAF", "tess-YAF"
    gender: str  # "female" or "male"
    emotion: str  # one of EMOTIONS
    intensity: str  # "normal", "strong", or "" where the corpus has none
    source_label: str  # the corpus's own label ("calm", "ps", ...)

    @property
    def label(self) -> int:
        return EMOTIONS.index(self.emotion)


def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def parse_ravdess(path: Path) -> Utterance | None:
    """An utterance from a RAVDESS audio-only speech file name, or None for other files."""
    match = _RAVDESS_NAME.match(path.stem)
    if not match:
        return None
    emotion_code, intensity, _statement, _repetition, actor = match.groups()
    if emotion_code not in RAVDESS_EMOTIONS:
        return None
    source = {"01": "neutral", "02": "calm"}.get(emotion_code, RAVDESS_EMOTIONS[emotion_code])
    return Utterance(
        path=str(path),
        corpus="ravdess",
        speaker=f"ravdess-{actor}",
        gender="male" if int(actor) % 2 else "female",
        emotion=RAVDESS_EMOTIONS[emotion_code],
        intensity={"01": "normal", "02": "strong"}[intensity],
        source_label=source,
    )


def parse_tess(path: Path) -> Utterance | None:
    """An utterance from a TESS file name ``<SPEAKER>_<word>_<emotion>``, or None."""
    parts = path.stem.split("_")
    if len(parts) < 3:
        return None
    speaker = _TESS_SPEAKER.get(parts[0].upper())
    label = parts[-1].lower()
    if speaker is None or label not in TESS_EMOTIONS:
        return None
    return Utterance(
        path=str(path),
        corpus="tess",
        speaker=f"tess-{speaker}",
        gender="female",
        emotion=TESS_EMOTIONS[label],
        intensity="",
        source_label=label,
    )


def find_utterances(roots: Iterable[Path]) -> list[Utterance]:
    """Every RAVDESS and TESS utterance below ``roots`` (each a corpus folder or a parent)."""
    found: dict[str, Utterance] = {}
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"corpus folder not found: {root}")
        for path in _audio_files(root):
            utt = parse_ravdess(path) or parse_tess(path)
            if utt is not None:
                found.setdefault(utt.path, utt)
    return sorted(found.values(), key=lambda u: u.path)


def write_manifest(utterances: list[Utterance], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[fl.name for fl in fields(Utterance)])
        writer.writeheader()
        for utt in utterances:
            writer.writerow(asdict(utt))


def read_manifest(path: Path) -> list[Utterance]:
    with open(path, newline="") as f:
        return [Utterance(**row) for row in csv.DictReader(f)]
