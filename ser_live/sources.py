"""Audio sources behind one interface: 16 kHz mono float32 blocks from ``blocks()``.

Threads (microphone): PortAudio calls ``_callback`` on its own real-time thread. The
callback only copies the block into a bounded queue; when the queue is full it drops the
block and counts it (``dropped_blocks``), never blocking, printing or allocating much. The
consumer thread (the session's worker) iterates ``blocks()``, which takes from the queue
and resamples. ``stop()`` may be called from any thread; it makes ``blocks()`` end.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import soxr

from ser_live import SAMPLE_RATE
from ser_live.audio_io import AudioReader
from ser_live.errors import DeviceError


class AudioSource(Protocol):
    name: str
    dropped_blocks: int

    def blocks(self) -> Iterator[np.ndarray]: ...

    def stop(self) -> None: ...


class FileSource:
    """A recording replayed as fast as possible, or at real-time pace (``realtime=True``)."""

    def __init__(
        self,
        path: str | Path,
        channel: int | None = None,
        realtime: bool = False,
        block_s: float = 0.5,
    ) -> None:
        self.reader = AudioReader(path, channel)
        self.name = str(path) if channel is None else f"{path} [channel {channel + 1}]"
        self.realtime = realtime
        self.block_s = block_s
        self.dropped_blocks = 0
        self._stop = threading.Event()

    @property
    def duration_s(self) -> float | None:
        return self.reader.duration_s

    def blocks(self) -> Iterator[np.ndarray]:
        started = time.monotonic()
        played = 0
        for block in self.reader.blocks(self.block_s):
            if self._stop.is_set():
                return
            if self.realtime:
                wait = started + played / SAMPLE_RATE - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
            played += len(block)
            yield block

    def stop(self) -> None:
        self._stop.set()


class ArraySource:
    """Audio already in memory (16 kHz mono float32) in blocks, as a file would give it:
    for audio a program made or changed itself (training's channels, a web upload's
    decoded samples), through the same analyse path as a file."""

    def __init__(self, samples: np.ndarray, name: str = "audio", block_s: float = 0.5) -> None:
        self.samples = np.asarray(samples, dtype=np.float32)
        self.name = name
        self.block_s = block_s
        self.dropped_blocks = 0
        self._stop = threading.Event()

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def blocks(self) -> Iterator[np.ndarray]:
        step = max(1, round(self.block_s * SAMPLE_RATE))
        for start in range(0, len(self.samples), step):
            if self._stop.is_set():
                return
            yield self.samples[start : start + step]

    def stop(self) -> None:
        self._stop.set()


def input_devices() -> list[dict]:
    """The input devices PortAudio sees: index, name, host API, channels, native rate."""
    import sounddevice as sd

    try:
        devices = sd.query_devices()
        apis = sd.query_hostapis()
    except sd.PortAudioError as exc:
        raise DeviceError(f"cannot list audio devices: {exc}") from None
    out = []
    for index, dev in enumerate(devices):
        if dev["max_input_channels"] > 0:
            out.append(
                {
                    "index": index,
                    "name": dev["name"],
                    "hostapi": apis[dev["hostapi"]]["name"],
                    "channels": dev["max_input_channels"],
                    "samplerate": dev["default_samplerate"],
                }
            )
    return out


def resolve_device(device: int | str | None) -> dict:
    """An input device by index, by name (exact, else a unique substring), or the default."""
    import sounddevice as sd

    devices = input_devices()
    if not devices:
        raise DeviceError("no audio input device found")
    if device is None or device == "":
        try:
            default = sd.default.device[0]
            if default is None or default < 0:
                default = sd.query_devices(kind="input")["index"]
        except (sd.PortAudioError, ValueError, KeyError, TypeError):
            return devices[0]
        for dev in devices:
            if dev["index"] == default:
                return dev
        return devices[0]
    if isinstance(device, int) or str(device).isdigit():
        for dev in devices:
            if dev["index"] == int(device):
                return dev
        raise DeviceError(f"no input device with index {device} (see: ser-live devices)")
    exact = [d for d in devices if d["name"] == device]
    if exact:
        return exact[0]
    partial = [d for d in devices if str(device).lower() in d["name"].lower()]
    if len(partial) == 1:
        return partial[0]
    if not partial:
        raise DeviceError(f"no input device named {device!r} (see: ser-live devices)")
    names = ", ".join(repr(d["name"]) for d in partial)
    raise DeviceError(f"input device name {device!r} is ambiguous: {names}")


class MicrophoneSource:
    """A PortAudio input device at its native rate, resampled to 16 kHz mono."""

    #: No block for this long from a started stream means the device is gone.
    STALL_S = 2.0

    def __init__(
        self, device: int | str | None = None, block_s: float = 0.02, queue_s: float = 10.0
    ) -> None:
        self.device = resolve_device(device)
        self.name = self.device["name"]
        self.samplerate = int(self.device["samplerate"]) or SAMPLE_RATE
        self.block_frames = max(1, int(block_s * self.samplerate))
        self.dropped_blocks = 0
        self.overflows = 0
        self._queue: queue.Queue = queue.Queue(maxsize=max(4, int(queue_s / block_s)))
        self._stop = threading.Event()

    def _callback(self, indata, frames, time_info, status) -> None:
        if status.input_overflow:
            self.overflows += 1
        try:
            self._queue.put_nowait(indata.copy())
        except queue.Full:
            self.dropped_blocks += 1

    def _open(self):
        import sounddevice as sd

        try:
            stream = sd.InputStream(
                device=self.device["index"],
                channels=1,
                samplerate=self.samplerate,
                blocksize=self.block_frames,
                dtype="float32",
                callback=self._callback,
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0]
            raise DeviceError(f"cannot open input device {self.name!r}: {reason}") from None
        return stream

    def blocks(self) -> Iterator[np.ndarray]:
        import sounddevice as sd

        resampler = (
            None
            if self.samplerate == SAMPLE_RATE
            else soxr.ResampleStream(self.samplerate, SAMPLE_RATE, 1, dtype="float32")
        )
        stream = self._open()
        last_block = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    data = self._queue.get(timeout=0.2)
                except queue.Empty:
                    if self._stop.is_set():
                        break
                    if not stream.active or time.monotonic() - last_block > self.STALL_S:
                        raise DeviceError(
                            f"input device {self.name!r} stopped delivering audio"
                        ) from None
                    continue
                if data is None:
                    break
                last_block = time.monotonic()
                mono = data[:, 0]
                if resampler is not None:
                    mono = resampler.resample_chunk(mono)
                if len(mono):
                    yield mono
        finally:
            try:
                stream.abort()
                stream.close()
            except sd.PortAudioError:
                pass  # the device is already gone

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Full):  # blocks() sees the event within 0.2 s anyway
            self._queue.put_nowait(None)


def open_source(device: int | str | None) -> AudioSource:
    """An input by the name a user gives it: ``monitor`` (what the computer plays, on
    PulseAudio/PipeWire), ``pulse:NAME`` (any PulseAudio/PipeWire source), a PortAudio
    device index or name, or None for the default input."""
    from ser_live import pulse

    if device == pulse.MONITOR:
        return pulse.PulseSource(pulse.MONITOR)
    if isinstance(device, str) and device.startswith(pulse.PREFIX):
        return pulse.PulseSource(device[len(pulse.PREFIX) :])
    return MicrophoneSource(device)


def all_inputs() -> list[tuple[str, int | str]]:
    """Every input a side can listen to, as (label, what ``open_source`` takes): the
    PortAudio devices, then the PulseAudio/PipeWire sources where a server runs (each
    output's monitor among them)."""
    from ser_live import pulse

    out: list[tuple[str, int | str]] = []
    with contextlib.suppress(DeviceError):
        out += [(d["name"], d["index"]) for d in input_devices()]
    if pulse.available():
        with contextlib.suppress(DeviceError):
            for s in pulse.pulse_sources():
                kind = "output monitor" if s["monitor"] else "PulseAudio"
                label = f"{s['description'] or s['name']} ({kind})"
                out.append((label, pulse.PREFIX + s["name"]))
    return out
