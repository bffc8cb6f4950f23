"""Builds ser-live's model from labelled corpora: ``python -m training.loco --help`` (README.md)."""

import time


def log(message: str) -> None:
    """A timestamped progress line, flushed at once (runs are long and often piped)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
