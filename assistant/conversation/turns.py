"""Turn-taking: voice segments and typed text become numbered user turns; barge-in and merging live here.

Rules (DESIGN §1, issue 3 and 4):
- every user utterance (or typed line) opens a turn with a new id;
- if the user speaks again before the reply is audible, the unfinished reply is cancelled and the parts
  merge into one turn, so the assistant never answers half an utterance;
- if the user speaks while the reply is audible, output is held at once; speech that lasts at least
  ``min_speech_ms`` cancels the turn (barge-in), shorter sounds (うん, a cough) resume the reply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from assistant.config.schema import BargeInConfig
from assistant.events import (
    Error,
    Event,
    InputEnded,
    InterruptRequest,
    Mode,
    OutputHold,
    OutputResume,
    PlaybackStarted,
    Sleeping,
    State,
    TextInput,
    TurnDone,
    TurnDropped,
    UserSpeechEnded,
    UserSpeechPaused,
    UserSpeechStarted,
    UserTranscript,
    UserTurnReady,
    VoiceDropped,
    VoiceEnded,
    VoicePaused,
    VoiceResumed,
    VoiceStarted,
    now,
)
from assistant.pipeline.stage import Stage

log = logging.getLogger(__name__)


def guess_language(text: str) -> str:
    """ja when the text holds kana or kanji, else en."""
    return "ja" if any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in text) else "en"


@dataclass
class _Utterance:
    """The user's turn being spoken (possibly merged from several voice segments)."""

    turn_id: int
    onset: float
    prefix: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))


@dataclass
class _BargeIn:
    """Speech heard while the reply was audible, not yet long enough to interrupt."""

    onset: float
    is_paused: bool = False
    timer: asyncio.Task[None] | None = None


class TurnController(Stage):
    """Owns turn ids and the assistant's state (listening / thinking / speaking); decides barge-in."""

    accepts = (VoiceStarted, VoicePaused, VoiceResumed, VoiceEnded, VoiceDropped, TextInput, InterruptRequest,
               PlaybackStarted, TurnDone, TurnDropped, Error, Mode, InputEnded, Sleeping)

    def __init__(self, barge_in: BargeInConfig, bedtime_min_speech_ms: int | None = None, first_turn_id: int = 1) -> None:
        super().__init__()
        self.config = barge_in
        self._bedtime_min_speech_ms = bedtime_min_speech_ms
        self._next_id = first_turn_id
        self._mode = "normal"
        self.active_turn: int | None = None   # the turn being answered
        self.is_audible = False                # some of the active turn's reply has played
        self._last_audio = np.zeros(0, dtype=np.float32)  # the active turn's user audio, for merging
        self._utterance: _Utterance | None = None
        self._barge: _BargeIn | None = None
        self._state = ""
        #: Asleep (bedtime sleep timer): no listening/thinking/speaking states until woken.
        self._is_asleep = False

    # ------------------------------------------------------------------ helpers

    @property
    def min_speech_s(self) -> float:
        ms = self.config.min_speech_ms
        if self._mode == "bedtime" and self._bedtime_min_speech_ms is not None:
            ms = max(ms, self._bedtime_min_speech_ms)
        return ms / 1000.0

    def _new_turn(self) -> int:
        turn_id = self._next_id
        self._next_id += 1
        return turn_id

    def allocate_turn(self) -> int:
        """A fresh turn id for a reply nobody asked for (a bedtime presence line): never a user turn's."""
        return self._new_turn()

    def _set_state(self, value: str) -> Event | None:
        if value == self._state or self._is_asleep:
            return None
        self._state = value
        return State(value=value)

    def _end_active(self) -> Event | None:
        self.active_turn = None
        self.is_audible = False
        return self._set_state("listening")

    def _cancel_active(self, reason: str) -> None:
        if self.active_turn is not None and self.ctx is not None:
            self.ctx.cancel_turn(self.active_turn, reason)
        self.active_turn = None
        self.is_audible = False

    async def start(self, ctx) -> None:
        await super().start(ctx)
        self.emit(State(value="listening"))
        self._state = "listening"

    # ------------------------------------------------------------------ events

    async def process(self, event: Event) -> AsyncIterator[Event]:
        for produced in self._handle(event):
            if produced is not None:
                yield produced

    def _handle(self, event: Event) -> list[Event | None]:
        if isinstance(event, VoiceStarted):
            return self._on_voice_started(event)
        if isinstance(event, VoicePaused):
            if self._barge is not None:
                self._barge.is_paused = True
                return []
            if self._utterance is None:
                return []
            return [UserSpeechPaused(turn_id=self._utterance.turn_id, pause_start=event.pause_start,
                                     sample_rate=event.sample_rate, audio=self._merged(event.audio))]
        if isinstance(event, VoiceResumed):
            if self._barge is not None:
                self._barge.is_paused = False
                if self._barge.timer is not None and self._barge.timer.done():
                    return self._confirm_barge_in()
            return []
        if isinstance(event, VoiceEnded):
            return self._on_voice_ended(event)
        if isinstance(event, VoiceDropped):
            if self._barge is not None:
                return self._resume_output()
            if self._utterance is not None:
                turn_id = self._utterance.turn_id
                self._utterance = None
                return [TurnDropped(turn_id=turn_id, reason="too short"),
                        self._set_state("thinking" if self.active_turn is not None else "listening")]
            return []
        if isinstance(event, TextInput):
            text = event.text.strip()
            if not text:
                return []
            self._cancel_active("typed input")
            self._utterance = None
            turn_id = self._new_turn()
            self.active_turn = turn_id
            self._last_audio = np.zeros(0, dtype=np.float32)
            language = guess_language(text)
            return [UserTranscript(turn_id=turn_id, text=text, language=language),
                    UserTurnReady(turn_id=turn_id, text=text, language=language), self._set_state("thinking")]
        if isinstance(event, InterruptRequest):
            if self.active_turn is None:
                return []
            self._cancel_active("interrupt button")
            return [self._set_state("listening")]
        if isinstance(event, PlaybackStarted):
            if event.turn_id != self.active_turn:
                return []
            self.is_audible = True
            return [self._set_state("speaking")]
        if isinstance(event, TurnDone | TurnDropped):
            if event.turn_id == self.active_turn:
                return [self._end_active()]
            return []
        if isinstance(event, Error):
            if event.ends_turn and event.turn_id is not None and event.turn_id == self.active_turn:
                self._cancel_active("error")
                return [self._set_state("listening")]
            return []
        if isinstance(event, Mode):
            self._mode = event.value if event.value in ("normal", "bedtime") else self._mode
            return []
        if isinstance(event, Sleeping):
            self._is_asleep = event.is_asleep
            if event.is_asleep:
                self._state = "sleeping"  # the bedtime stage announced it
                return []
            self._state = ""
            return [self._set_state("thinking" if self.active_turn is not None else "listening")]
        if isinstance(event, InputEnded):
            return []
        return []

    def _merged(self, audio: np.ndarray) -> np.ndarray:
        if self._utterance is None or not self._utterance.prefix.size:
            return audio
        return np.concatenate([self._utterance.prefix, audio])

    def _on_voice_started(self, event: VoiceStarted) -> list[Event | None]:
        if self.active_turn is not None and self.is_audible:
            if not self.config.enabled:
                return []  # the user talks over the reply; without barge-in we let it finish
            self._barge = _BargeIn(onset=event.onset)
            self._barge.timer = self.ctx.spawn(self._barge_in_timer(self._barge)) if self.ctx else None
            return [OutputHold(at=now())]
        prefix = np.zeros(0, dtype=np.float32)
        if self.active_turn is not None:
            # The reply is not audible yet: the user was not finished. Merge and answer the whole.
            log.info("user resumed before the reply of turn %d was audible: merging", self.active_turn)
            prefix = self._last_audio
            self._cancel_active("user resumed speaking")
        turn_id = self._new_turn()
        self._utterance = _Utterance(turn_id=turn_id, onset=event.onset, prefix=prefix)
        return [UserSpeechStarted(turn_id=turn_id, onset=event.onset), self._set_state("listening")]

    def _on_voice_ended(self, event: VoiceEnded) -> list[Event | None]:
        barge = self._take_barge()
        if barge is not None:
            if event.speech_end - barge.onset < self.min_speech_s:
                return [OutputResume()]  # a backchannel or a cough: the reply goes on
            # Long enough after all (it ended before the timer fired): interrupt and take the turn.
            self._cancel_active("barge-in")
            self._utterance = _Utterance(turn_id=self._new_turn(), onset=barge.onset)
            started: list[Event | None] = [UserSpeechStarted(turn_id=self._utterance.turn_id, onset=barge.onset)]
            return started + self._finish_utterance(event)
        if self._utterance is None:
            return []
        return self._finish_utterance(event)

    def _finish_utterance(self, event: VoiceEnded) -> list[Event | None]:
        assert self._utterance is not None
        utterance, self._utterance = self._utterance, None
        audio = np.concatenate([utterance.prefix, event.audio]) if utterance.prefix.size else event.audio
        self.active_turn = utterance.turn_id
        self.is_audible = False
        self._last_audio = audio
        return [UserSpeechEnded(turn_id=utterance.turn_id, onset=utterance.onset, speech_end=event.speech_end,
                                decided_at=event.decided_at, sample_rate=event.sample_rate, audio=audio),
                self._set_state("thinking")]

    async def _barge_in_timer(self, barge: _BargeIn) -> None:
        delay = barge.onset + self.min_speech_s - now()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._barge is barge and not barge.is_paused:
            for produced in self._confirm_barge_in():
                if produced is not None:
                    self.emit(produced)

    def _confirm_barge_in(self) -> list[Event | None]:
        """The speech over the reply lasted long enough: cancel the reply; the speech opens the next turn."""
        barge = self._take_barge()
        if barge is None:
            return []
        log.info("barge-in: the user spoke over turn %s", self.active_turn)
        self._cancel_active("barge-in")
        self._utterance = _Utterance(turn_id=self._new_turn(), onset=barge.onset)
        return [UserSpeechStarted(turn_id=self._utterance.turn_id, onset=barge.onset), self._set_state("listening")]

    def _resume_output(self) -> list[Event | None]:
        return [OutputResume()] if self._take_barge() is not None else []

    def _take_barge(self) -> _BargeIn | None:
        """End the pending barge-in (its timer too) and return it."""
        barge, self._barge = self._barge, None
        if barge is not None and barge.timer is not None and barge.timer is not asyncio.current_task():
            barge.timer.cancel()
        return barge
