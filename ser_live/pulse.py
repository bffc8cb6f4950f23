"""PulseAudio / PipeWire sources by name, the other side of a call among them: a sink's
*monitor* source records what the computer plays through it.

PortAudio reaches PulseAudio through ALSA's single "pulse" device, which records from the
default source only, so the two sides of a call (your microphone and the speakers'
monitor) cannot both come through it. A ``PulseSource`` records one named source with
``parec`` (pulseaudio-utils; PipeWire's pipewire-pulse serves it too), which resamples to
16 kHz mono float32 and writes it to a pipe.

Threads: ``blocks()`` runs on the consumer thread (a session's worker). It reads the pipe
and checks every second that its source still exists: PulseAudio moves a stream whose
source was removed onto another source (module-rescue-streams), so without the check a
pulled headset would go on recording some other device under its name. ``stop()`` may be
called from any thread: it ends the ``parec`` process, which ends ``blocks()``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator

import numpy as np

from ser_live import SAMPLE_RATE
from ser_live.errors import DeviceError

#: How a user names a PulseAudio source: ``pulse:NAME`` (``ser-live devices`` lists them).
PREFIX = "pulse:"
#: The monitor of the default output: what the other side of a call says.
MONITOR = "monitor"


def _pactl(*args: str) -> str:
    try:
        done = subprocess.run(
            ["pactl", *args], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeviceError(f"cannot reach PulseAudio/PipeWire (pactl: {exc})") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise DeviceError(f"cannot reach PulseAudio/PipeWire (pactl: {reason})")
    return done.stdout


def available() -> bool:
    """Whether a PulseAudio or PipeWire server answers and ``parec`` is installed."""
    if shutil.which("parec") is None or shutil.which("pactl") is None:
        return False
    try:
        _pactl("info")
    except DeviceError:
        return False
    return True


def pulse_sources() -> list[dict]:
    """The server's sources: name, description and whether it is a sink's monitor."""
    out = []
    entry: dict | None = None  # lines before the first "Source #" belong to none
    for line in _pactl("list", "sources").splitlines():
        text = line.strip()
        if text.startswith("Source #"):
            entry = {"name": "", "description": "", "monitor": False}
            out.append(entry)
        elif text.startswith("Name:") and entry is not None:
            entry["name"] = text.partition(":")[2].strip()
        elif text.startswith("Description:") and entry is not None:
            entry["description"] = text.partition(":")[2].strip()
        elif text.startswith("Monitor of Sink:") and entry is not None:
            entry["monitor"] = text.partition(":")[2].strip() not in ("", "n/a")
    return [e for e in out if e["name"]]


def source_names() -> set[str]:
    """Names of the sources that exist now (one cheap ``pactl`` call)."""
    lines = _pactl("list", "short", "sources").splitlines()
    return {line.split("\t")[1] for line in lines if line.count("\t") >= 1}


def default_monitor() -> str:
    """The monitor source of the default output device."""
    for line in _pactl("info").splitlines():
        if line.startswith("Default Sink:"):
            sink = line.partition(":")[2].strip()
            if sink and sink != "@DEFAULT_SINK@":
                return sink + ".monitor"
    raise DeviceError("PulseAudio/PipeWire has no default output to monitor")


class PulseSource:
    """A PulseAudio/PipeWire source, by name, as 16 kHz mono float32 blocks."""

    #: How often ``blocks()`` checks that the source still exists.
    CHECK_S = 1.0

    def __init__(self, source: str, block_s: float = 0.02) -> None:
        if shutil.which("parec") is None:
            raise DeviceError(
                "recording a PulseAudio/PipeWire source needs parec (Debian/Ubuntu: "
                "apt-get install pulseaudio-utils)"
            )
        sources = {s["name"]: s for s in pulse_sources()}
        self.source = default_monitor() if source == MONITOR else source
        if self.source not in sources:
            raise DeviceError(f"no PulseAudio source named {self.source!r} (see: ser-live devices)")
        self.name = sources[self.source]["description"] or self.source
        self.block_bytes = max(1, round(block_s * SAMPLE_RATE)) * 4
        self.dropped_blocks = 0
        self._stop = threading.Event()
        self._process: subprocess.Popen | None = None

    def blocks(self) -> Iterator[np.ndarray]:
        command = [
            "parec",
            f"--device={self.source}",
            "--raw",
            "--format=float32le",
            f"--rate={SAMPLE_RATE}",
            "--channels=1",
            "--latency-msec=20",
            "--client-name=ser-live",
        ]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._process = process
        if self._stop.is_set():  # stopped before it started
            process.terminate()
        carry = b""
        next_check = time.monotonic() + self.CHECK_S
        try:
            while True:
                data = os.read(process.stdout.fileno(), self.block_bytes)
                if not data:
                    break
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.CHECK_S
                    if not self._stop.is_set() and self.source not in source_names():
                        raise DeviceError(f"input {self.name!r} is gone")
                data = carry + data
                usable = len(data) - len(data) % 4
                carry = data[usable:]
                if usable:
                    yield np.frombuffer(data[:usable], dtype="<f4").astype(np.float32)
            if not self._stop.is_set():
                reason = process.stderr.read().decode(errors="replace").strip().splitlines()
                raise DeviceError(
                    f"input {self.name!r} stopped delivering audio"
                    + (f" ({reason[-1]})" if reason else "")
                )
        finally:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()
            process.stderr.close()

    def stop(self) -> None:
        self._stop.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
