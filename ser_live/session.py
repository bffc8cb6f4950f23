"""Running a source through the engine: the one loop that files and microphones share.

``run_source`` is synchronous. ``LiveSession`` runs it on a worker thread for the GUI:

* the worker thread owns the source iteration, the engine and the writing of update rows;
  the two sides of a call are two ``LiveSession`` objects, each with its own worker,
  source and engine, writing to one ``SessionLog`` (which serialises rows);
* PortAudio's callback thread only fills the source's queue (see ``sources``);
* the engine's second opinion, if it has one, hears each ended phrase on a thread of its
  own (``ser_live.second_opinion.PhraseOpinions``); the worker collects its verdicts;
* any thread (the UI) may call ``configure``, ``stop``, ``pop_updates`` and
  ``pop_phrases`` and read ``session_s`` (markers go straight to the ``SessionLog``,
  whose lock orders them); updates and phrase verdicts cross to it through
  lock-protected lists, and settings reach the engine only through ``configure``, which
  the worker applies between blocks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from ser_live import SAMPLE_RATE
from ser_live.engine import Engine, Update
from ser_live.errors import SerLiveError
from ser_live.second_opinion import PhraseVerdict
from ser_live.session_log import SideLog
from ser_live.sources import AudioSource

UpdateSink = Callable[[Update], None]
BlockSink = Callable[[np.ndarray], None]
PhraseSink = Callable[[PhraseVerdict], None]


def run_source(
    source: AudioSource,
    engine: Engine,
    on_update: UpdateSink | None = None,
    on_block: BlockSink | None = None,
    duration_s: float | None = None,
    on_phrase: PhraseSink | None = None,
) -> int:
    """Feed every block of ``source`` to ``engine``; return the number of updates.
    ``on_phrase`` gets each phrase verdict once it is ready (the last ones at the end)."""
    count = 0
    fed = 0
    limit = None if duration_s is None else round(duration_s * SAMPLE_RATE)
    try:
        for block in source.blocks():
            if limit is not None:
                block = block[: limit - fed]
            fed += len(block)
            if on_block is not None:
                on_block(block)
            count += _deliver(engine.feed(block), on_update)
            _deliver(engine.take_phrases(), on_phrase)
            if limit is not None and fed >= limit:
                source.stop()
                break
    except SerLiveError:
        # The source broke (a device unplugged, a call's line gone, a truncated file): what
        # was heard before the break still gets its verdicts, then the error is reported.
        _deliver(engine.finish(), on_update)
        _deliver(engine.take_phrases(wait=True), on_phrase)
        raise
    count += _deliver(engine.finish(), on_update)
    _deliver(engine.take_phrases(wait=True), on_phrase)
    return count


def _deliver(items, sink) -> int:
    count = 0
    for item in items:
        count += 1
        if sink is not None:
            sink(item)
    return count


class LiveSession:
    """One side of a session: a source, an engine and its rows of the log, on a worker
    thread."""

    def __init__(
        self,
        engine: Engine,
        source: AudioSource,
        log: SideLog | None,
        time_offset_s: float = 0.0,
        duration_s: float | None = None,
    ) -> None:
        """``time_offset_s``: where this run starts on the session's clock, so a session
        resumed after a pause or on another device continues one timeline and one log.
        ``duration_s``: stop after this much audio."""
        self.engine = engine
        self.time_offset_s = time_offset_s
        self.duration_s = duration_s
        self.source = source
        self.log = log
        self.error: SerLiveError | None = None
        self._lock = threading.Lock()
        self._pending: list[Update] = []
        self._phrases: list[PhraseVerdict] = []
        self._blocks: list[np.ndarray] = []
        self._requests: list[Callable[[Engine], None]] = []
        self._delivering = False  # worker thread only
        self._thread = threading.Thread(target=self._run, name="ser-live-session", daemon=True)
        self.started_at = time.time()

    @property
    def session_s(self) -> float:
        """The session clock: this run's audio so far, after the offset."""
        return self.time_offset_s + self.engine.stream_s

    def start(self) -> None:
        # Written here, in the order the sides start, so a log lists its sides in that
        # order; "started" follows from the worker once the device delivers audio.
        if self.log:
            self.log.write_note("event", f"opening {self.source.name}", self.session_s, time.time())
        self._thread.start()

    def _on_update(self, update: Update) -> None:
        if self.time_offset_s:
            update = replace(
                update,
                start_s=update.start_s + self.time_offset_s,
                end_s=update.end_s + self.time_offset_s,
            )
        if self.log:
            self.log.write_update(update)
        with self._lock:
            self._pending.append(update)

    def _on_phrase(self, verdict: PhraseVerdict) -> None:
        if self.time_offset_s:
            verdict = replace(
                verdict,
                start_s=verdict.start_s + self.time_offset_s,
                end_s=verdict.end_s + self.time_offset_s,
            )
        if self.log:
            self.log.write_phrase(verdict)
        with self._lock:
            self._phrases.append(verdict)

    def _on_block(self, block: np.ndarray) -> None:
        if not self._delivering:  # the device is open and delivering: log it once
            self._delivering = True
            if self.log:
                self.log.write_note(
                    "event", f"started: {self.source.name}", self.session_s, time.time()
                )
        with self._lock:
            self._blocks.append(block)
            requests, self._requests = self._requests, []
        for request in requests:  # settings changes, applied by the engine's own thread
            request(self.engine)

    def configure(self, request: Callable[[Engine], None]) -> None:
        """Have the worker apply ``request(engine)`` between two blocks (any thread)."""
        with self._lock:
            self._requests.append(request)

    def _run(self) -> None:
        try:
            run_source(
                self.source,
                self.engine,
                self._on_update,
                self._on_block,
                self.duration_s,
                on_phrase=self._on_phrase,
            )
        except Exception as exc:  # the worker must report a failure, never die silently
            self.error = (
                exc
                if isinstance(exc, SerLiveError)
                else SerLiveError(f"internal error: {type(exc).__name__}: {exc}")
            )
            if self.log:
                self.log.write_note("event", f"error: {self.error}", self.session_s, time.time())
        else:
            if self.log:
                self.log.write_note(
                    "event",
                    f"stopped; {self.source.dropped_blocks} blocks dropped",
                    self.session_s,
                    time.time(),
                )
        finally:
            self.engine.close()  # its second opinion's thread, if it has one

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def pop_updates(self) -> tuple[list[Update], list[np.ndarray]]:
        """Updates and audio blocks since the last call (for the UI's timer)."""
        with self._lock:
            updates, blocks = self._pending, self._blocks
            self._pending, self._blocks = [], []
        return updates, blocks

    def pop_phrases(self) -> list[PhraseVerdict]:
        """Phrase verdicts since the last call (for the UI's timer)."""
        with self._lock:
            phrases, self._phrases = self._phrases, []
        return phrases

    def stop(self, timeout: float = 5.0) -> None:
        self.source.stop()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
