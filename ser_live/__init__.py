"""ser-live: real-time speech emotion recognition."""

__version__ = "0.1.0"

#: The emotions ser-live reports, in the order of the model's outputs.
EMOTIONS: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)

#: Every stage of the engine works on 16 kHz mono float32 audio.
SAMPLE_RATE = 16_000
