"""Turn-taking: voice segments and typed text become numbered user turns; end of turn, merging and barge-in.

Rules (DESIGN.md §1 "Turns and barge-in", §6 for the end-of-turn wait):
- every user utterance (or typed line) opens a turn with a new id;
- end of turn adapts: when a pause's words arrive (SegmentTranscript), an EndOfTurnHint tells the VAD how long
  the silence must last — short after finished words, long after unfinished ones (endpointing.py);
- if the user speaks again before the reply is audible, the two are one turn when the pause was short or the
  first words were clearly unfinished: the unheard reply is cancelled and the segments' texts are joined
  (each segment is recognised once; merged audio is never recognised again). After a longer pause the new
  words are a new question: the first keeps its turn and its answer, the second is answered after it;
- if the user speaks while a reply is audible, output is held at once; speech that lasts at least
  ``min_speech_ms`` cancels the replies in flight (barge-in), shorter sounds (うん, a cough) resume the reply.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from assistant.config.schema import BargeInConfig, TurnsConfig, VadConfig
from assistant.conversation.endpointing import judge_completion, merges_with_previous
from assistant.events import (
    MODES,
    EndOfTurnHint,
    Error,
    Event,
    InputEnded,
    InterruptRequest,
    Mode,
    OutputHold,
    OutputResume,
    PlaybackStarted,
    SayRequest,
    ScriptedLine,
    SegmentTranscript,
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
from assistant.stage import Stage, StageContext
from assistant.text import guess_language, join_parts

log = logging.getLogger(__name__)

#: Segment transcripts kept for merge decisions (a few turns' worth).
_KEEP_WORDS = 32


_EMPTY = np.zeros(0, dtype=np.float32)


@dataclass
class _Said:
    """A user turn's voice so far: its segments (ids, where each starts in ``audio``) and their audio."""

    turn_id: int
    onset: float
    audio: np.ndarray = field(default_factory=lambda: _EMPTY)
    segment_ids: tuple[int, ...] = ()
    segment_starts: tuple[int, ...] = ()
    speech_end: float = 0.0
    #: The end of speech on the audio's own clock, when the VAD knows it.
    stream_end: float | None = None
    #: The earlier turn this one continues (merged into it), if any.
    merged_from: int | None = None


@dataclass
class _Utterance:
    """The user's turn being spoken: what it continues (``prior``) and the segment open now."""

    turn_id: int
    onset: float
    segment_id: int
    prior: _Said | None = None


@dataclass
class _BargeIn:
    """Speech heard while the reply was audible, not yet long enough to interrupt."""

    onset: float
    segment_id: int = 0
    is_paused: bool = False
    timer: asyncio.Task[None] | None = None


class TurnController(Stage):
    """Owns turn ids and the assistant's state (listening / thinking / speaking); decides the end of turn,
    merging and barge-in. Turns being answered are kept in order (``answering``). A SayRequest (a line
    nobody asked for) gets a turn of its own: ScriptedLine, which the reply stage speaks."""

    accepts = (VoiceStarted, VoicePaused, VoiceResumed, VoiceEnded, VoiceDropped, SegmentTranscript, TextInput,
               InterruptRequest, PlaybackStarted, TurnDone, TurnDropped, Error, Mode, InputEnded, Sleeping,
               SayRequest)

    def __init__(self, barge_in: BargeInConfig, bedtime_min_speech_ms: int | None = None, first_turn_id: int = 1,
                 turns: TurnsConfig | None = None, vad: VadConfig | None = None) -> None:
        super().__init__()
        self.config = barge_in
        self.turns_config = turns or TurnsConfig()
        self.vad_config = vad or VadConfig()
        self._bedtime_min_speech_ms = bedtime_min_speech_ms
        self._next_id = first_turn_id
        self._mode = "normal"
        #: Turns being answered, oldest first; a reply is audible once its playback started.
        self.answering: list[int] = []
        self._audible: set[int] = set()
        self._last: _Said | None = None       # the last finished user turn (what a resumed turn would merge)
        self._utterance: _Utterance | None = None
        self._barge: _BargeIn | None = None
        self._words: collections.OrderedDict[int, SegmentTranscript] = collections.OrderedDict()
        self._state = ""
        #: Asleep (the bedtime stage's Sleeping events): no listening/thinking/speaking states until woken.
        self._is_asleep = False

    # ------------------------------------------------------------------ helpers

    @property
    def active_turn(self) -> int | None:
        """The oldest turn being answered (the one whose reply plays first), if any."""
        return self.answering[0] if self.answering else None

    @property
    def is_audible(self) -> bool:
        """Some reply in flight has started to play."""
        return bool(self._audible)

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

    def _set_state(self, value: str) -> Event | None:
        if value == self._state or self._is_asleep:
            return None
        self._state = value
        return State(value=value)

    def _settled_state(self) -> Event | None:
        """The state when the user is not speaking: speaking, thinking or listening."""
        if self._audible:
            return self._set_state("speaking")
        return self._set_state("thinking" if self.answering else "listening")

    def _forget(self, turn_id: int) -> None:
        if turn_id in self.answering:
            self.answering.remove(turn_id)
        self._audible.discard(turn_id)

    def _cancel(self, turn_ids: list[int], reason: str) -> None:
        for turn_id in turn_ids:
            if self.ctx is not None:
                self.ctx.cancel_turn(turn_id, reason)
            self._forget(turn_id)

    def _cancel_all(self, reason: str) -> None:
        self._cancel(list(self.answering), reason)

    async def start(self, ctx: StageContext) -> None:
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
            return self._on_voice_paused(event)
        if isinstance(event, VoiceResumed):
            if self._barge is not None:
                self._barge.is_paused = False
                if self._barge.timer is not None and self._barge.timer.done():
                    return self._confirm_barge_in()
            return []
        if isinstance(event, VoiceEnded):
            return self._on_voice_ended(event)
        if isinstance(event, VoiceDropped):
            return self._on_voice_dropped()
        if isinstance(event, SegmentTranscript):
            return self._on_words(event)
        if isinstance(event, TextInput):
            text = event.text.strip()
            if not text:
                return []
            self._cancel_all("typed input")
            self._utterance = self._last = None
            turn_id = self._new_turn()
            self.answering.append(turn_id)
            language = guess_language(text)
            return [UserTranscript(turn_id=turn_id, text=text, language=language),
                    UserTurnReady(turn_id=turn_id, text=text, language=language, parts=(text,)),
                    self._set_state("thinking")]
        if isinstance(event, InterruptRequest):
            if not self.answering:
                return []
            self._cancel_all("interrupt button")
            return [self._set_state("listening")]
        if isinstance(event, PlaybackStarted):
            if event.turn_id not in self.answering:
                return []
            self._audible.add(event.turn_id)
            return [self._set_state("speaking")] if self._utterance is None else []
        if isinstance(event, TurnDone | TurnDropped):
            if event.turn_id not in self.answering:
                return []
            self._forget(event.turn_id)
            return [] if self._utterance is not None else [self._settled_state()]
        if isinstance(event, Error):
            if event.ends_turn and event.turn_id is not None and event.turn_id in self.answering:
                self._cancel([event.turn_id], "error")
                return [] if self._utterance is not None else [self._settled_state()]
            return []
        if isinstance(event, Mode):
            self._mode = event.value if event.value in MODES else self._mode
            return []
        if isinstance(event, SayRequest):
            # A line nobody asked for (a bedtime presence line) gets a turn id of its own, never a user turn's.
            return [ScriptedLine(turn_id=self._new_turn(), persona=event.persona, text=event.text,
                                 fade_out_s=event.fade_out_s)]
        if isinstance(event, Sleeping):
            self._is_asleep = event.is_asleep
            if event.is_asleep:
                self._state = "sleeping"  # the bedtime stage announced it
                return []
            self._state = ""
            return [self._settled_state()]
        return []

    # ------------------------------------------------------------------ voice

    def _on_voice_started(self, event: VoiceStarted) -> list[Event | None]:
        if self._audible:
            if not self.config.enabled:
                return []  # the user talks over the reply; without barge-in we let it finish
            self._barge = _BargeIn(onset=event.onset, segment_id=event.segment_id)
            self._barge.timer = self.ctx.spawn(self._barge_in_timer(self._barge)) if self.ctx else None
            return [OutputHold(at=now())]
        prior: _Said | None = None
        last = self._last
        if last is not None and last.turn_id in self.answering:
            # The reply to the last words is not audible yet: one turn, or a second question?
            # The silence the user left, on the audio's clock when known (a file read fast keeps its pauses).
            if event.stream_onset is not None and last.stream_end is not None:
                gap = event.stream_onset - last.stream_end
            else:
                gap = event.onset - last.speech_end
            if merges_with_previous(gap, self._text_of(last), self.turns_config.merge_pause_ms / 1000.0):
                log.info("user went on %.2f s after turn %d, before its reply was heard: merging", gap, last.turn_id)
                prior = last
                self._cancel([last.turn_id], "user went on speaking")
            else:
                log.info("user spoke again %.2f s after turn %d: a new turn, answered after it", gap, last.turn_id)
        self._utterance = _Utterance(turn_id=self._new_turn(), onset=event.onset, segment_id=event.segment_id,
                                     prior=prior)
        return [UserSpeechStarted(turn_id=self._utterance.turn_id, onset=event.onset), self._set_state("listening")]

    def _on_voice_paused(self, event: VoicePaused) -> list[Event | None]:
        utterance = self._utterance
        if utterance is None or self._barge is not None:
            if self._barge is not None:
                self._barge.is_paused = True
            # Nobody will recognise these words: the VAD need not wait for them.
            return [self._hint(event.pause_id, "unclear")]
        previous = utterance.prior.segment_ids[-1] if utterance.prior is not None else None
        return [UserSpeechPaused(turn_id=utterance.turn_id, pause_start=event.pause_start, sample_rate=event.sample_rate,
                                 audio=event.audio, segment_id=event.segment_id, pause_id=event.pause_id,
                                 previous_segment=previous)]

    def _on_words(self, event: SegmentTranscript) -> list[Event | None]:
        self._words[event.segment_id] = event
        while len(self._words) > _KEEP_WORDS:
            self._words.popitem(last=False)
        if not event.pause_id:
            return []
        return [self._hint(event.pause_id, judge_completion(event.text) if event.is_speech else "unclear")]

    def _hint(self, pause_id: int, completion: str) -> EndOfTurnHint:
        vad = self.vad_config
        hangover = {"complete": vad.complete_hangover_ms, "unfinished": vad.unfinished_hangover_ms}.get(
            completion, vad.hangover_ms)
        return EndOfTurnHint(pause_id=pause_id, hangover_ms=hangover, reason=completion)

    def _text_of(self, said: _Said) -> str | None:
        """The recognised text of a finished turn, if every segment's words are known."""
        parts = [self._words.get(segment) for segment in said.segment_ids]
        if any(part is None for part in parts):
            return None
        return join_parts([part.text for part in parts if part is not None])

    def _on_voice_ended(self, event: VoiceEnded) -> list[Event | None]:
        barge = self._take_barge()
        if barge is not None:
            if event.speech_end - barge.onset < self.min_speech_s:
                return [OutputResume()]  # a backchannel or a cough: the reply goes on
            # Long enough after all (it ended before the timer fired): interrupt and take the turn.
            self._cancel_all("barge-in")
            self._utterance = _Utterance(turn_id=self._new_turn(), onset=barge.onset, segment_id=event.segment_id)
            started: list[Event | None] = [UserSpeechStarted(turn_id=self._utterance.turn_id, onset=barge.onset)]
            return started + self._finish_utterance(event.audio, event.segment_id, event.speech_end,
                                                    event.decided_at, event.stream_end)
        if self._utterance is None:
            return []
        return self._finish_utterance(event.audio, event.segment_id, event.speech_end, event.decided_at,
                                      event.stream_end)

    def _on_voice_dropped(self) -> list[Event | None]:
        if self._barge is not None:
            return self._resume_output()
        utterance = self._utterance
        if utterance is None:
            return []
        if utterance.prior is not None:
            # A cough after the words went on: the merged turn is what was said before it, nothing is lost.
            prior = utterance.prior
            return self._finish_utterance(_EMPTY, None, prior.speech_end, now(), prior.stream_end)
        self._utterance = None
        return [TurnDropped(turn_id=utterance.turn_id, reason="too short"), self._settled_state()]

    def _finish_utterance(self, audio: np.ndarray, segment_id: int | None, speech_end: float,
                          decided_at: float, stream_end: float | None = None) -> list[Event | None]:
        assert self._utterance is not None
        utterance, self._utterance = self._utterance, None
        prior = utterance.prior
        segments: tuple[int, ...] = ()
        starts: tuple[int, ...] = ()
        whole = audio
        if prior is not None:
            segments, starts = prior.segment_ids, prior.segment_starts
            whole = np.concatenate([prior.audio, audio]) if audio.size else prior.audio
        if segment_id is not None:
            segments, starts = (*segments, segment_id), (*starts, len(whole) - len(audio))
        said = _Said(turn_id=utterance.turn_id, onset=prior.onset if prior else utterance.onset, audio=whole,
                     segment_ids=segments, segment_starts=starts, speech_end=speech_end, stream_end=stream_end,
                     merged_from=prior.turn_id if prior else None)
        self._last = said
        self.answering.append(said.turn_id)
        return [UserSpeechEnded(turn_id=said.turn_id, onset=said.onset, speech_end=speech_end, decided_at=decided_at,
                                audio=whole, segment_ids=segments, segment_starts=starts,
                                merged_from=said.merged_from),
                self._set_state("thinking")]

    # ------------------------------------------------------------------ barge-in

    async def _barge_in_timer(self, barge: _BargeIn) -> None:
        delay = barge.onset + self.min_speech_s - now()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._barge is barge and not barge.is_paused:
            for produced in self._confirm_barge_in():
                if produced is not None:
                    self.emit(produced)

    def _confirm_barge_in(self) -> list[Event | None]:
        """The speech over the reply lasted long enough: cancel the replies in flight; the speech opens the
        next turn."""
        barge = self._take_barge()
        if barge is None:
            return []
        log.info("barge-in: the user spoke over turn %s", self.active_turn)
        self._cancel_all("barge-in")
        self._last = None
        self._utterance = _Utterance(turn_id=self._new_turn(), onset=barge.onset, segment_id=barge.segment_id)
        return [UserSpeechStarted(turn_id=self._utterance.turn_id, onset=barge.onset), self._set_state("listening")]

    def _resume_output(self) -> list[Event | None]:
        return [OutputResume()] if self._take_barge() is not None else []

    def _take_barge(self) -> _BargeIn | None:
        """End the pending barge-in (its timer too) and return it."""
        barge, self._barge = self._barge, None
        if barge is not None and barge.timer is not None and barge.timer is not asyncio.current_task():
            barge.timer.cancel()
        return barge
