"""Builds ser-live's model from labelled corpora: ``python -m training.loco --help`` (README.md)."""

import sys
import time


def log(message: str) -> None:
    """A timestamped progress line on stderr, flushed at once (runs are long and often
    piped): stdout holds only a command's report, so that it can be redirected to a file."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
