"""Playback: each sentence's audio goes to the sink in order, in 20 ms blocks, and stops at once when told."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator

from assistant.audio.lipsync import level
from assistant.audio.sinks import AudioSink
from assistant.events import (
    Audio,
    Event,
    Interrupted,
    OutputHold,
    OutputResume,
    PlaybackFinished,
    PlaybackStarted,
    now,
)
from assistant.stage import Stage, StageContext

log = logging.getLogger(__name__)

BLOCK_MS = 20


class OutputStage(Stage):
    """Plays Audio events through a sink.

    In: Audio (queued, played in order). Urgent: OutputHold (pause within one block), OutputResume
    (continue where it paused), Interrupted (stop that turn at once and drop its queued audio).
    Out: PlaybackStarted at a sentence's first sample, PlaybackFinished with the seconds actually played.
    """

    accepts = (Audio,)
    urgent = (Interrupted, OutputHold, OutputResume)

    def __init__(self, sink: AudioSink, block_ms: int = BLOCK_MS) -> None:
        super().__init__()
        self.sink = sink
        self.block_ms = block_ms
        self._running = asyncio.Event()
        self._running.set()
        self._stopped_turns: deque[int] = deque(maxlen=256)
        self._playing_turn: int | None = None

    @property
    def is_held(self) -> bool:
        return not self._running.is_set()

    @property
    def is_playing(self) -> bool:
        return self._playing_turn is not None

    async def start(self, ctx: StageContext) -> None:
        await super().start(ctx)
        await self.sink.open()

    async def stop(self) -> None:
        await self.sink.close()

    def on_urgent(self, event: Event) -> None:
        if isinstance(event, OutputHold):
            self._running.clear()
        elif isinstance(event, OutputResume):
            self._running.set()
        elif isinstance(event, Interrupted):
            self._stopped_turns.append(event.turn_id)
            if self._playing_turn == event.turn_id:
                self.sink.halt()
            # The barge-in that held the output became an interruption: the hold is over.
            self._running.set()

    def _is_stopped(self, turn_id: int) -> bool:
        return turn_id in self._stopped_turns or (self.ctx is not None and self.ctx.is_cancelled(turn_id))

    async def process(self, event: Event) -> AsyncIterator[Event]:
        if isinstance(event, Audio) and not self._is_stopped(event.turn_id):
            await self._play(event)
        return
        yield  # pragma: no cover - events go out through emit, also from the cancel path

    async def _play(self, audio: Audio) -> None:
        if self.sink.sample_rate not in (None, audio.sample_rate):  # resampling a sentence: off the loop
            samples, rate = await asyncio.to_thread(self.sink.convert, audio.samples, audio.sample_rate)
        else:
            samples, rate = self.sink.convert(audio.samples, audio.sample_rate)
        block = max(1, int(rate * self.block_ms / 1000))
        played = 0
        started = False
        self._playing_turn = audio.turn_id
        try:
            for offset in range(0, max(len(samples), 1), block):
                if not self._running.is_set():
                    await self._running.wait()
                if self._is_stopped(audio.turn_id):
                    break
                if not started:
                    started = True
                    self.emit(PlaybackStarted(turn_id=audio.turn_id, sentence_index=audio.sentence_index,
                                              at=now(), level=level(samples, rate)))
                chunk = samples[offset:offset + block]
                if len(chunk):
                    await self.sink.write(chunk, rate, audio.turn_id, audio.sentence_index)
                    played += len(chunk)
        except asyncio.CancelledError:
            self.sink.halt()  # the turn was cancelled: nothing more of it may be heard
            raise
        finally:
            self._playing_turn = None
            if started:
                self.emit(PlaybackFinished(turn_id=audio.turn_id, sentence_index=audio.sentence_index,
                                           played_s=played / rate, at=now(), duration_s=len(samples) / rate))
