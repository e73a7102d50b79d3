"""Turn accounting: what a reply said, what of it was heard, and what goes to memory.

A :class:`TurnLedger` keeps one account per reply in flight. The reply stage writes each line through it
(:meth:`TurnLedger.line` numbers the sentence and makes its Subtitle) and closes the account when the reply
is written (:meth:`TurnLedger.finish`: ReplyDone). The output's playback reports say how much of each
sentence was played; once every sentence is accounted for, the ledger gives the turn's TurnDone with only
what was heard — whole sentences played, and the played part of a cut one (with …). Memory gets the user's
words before the reply (only the new ones of a turn that continues an earlier one) and, after the reply,
what TurnDone says was heard; an interrupted reply is recorded up to what was heard, marked interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Protocol

from assistant.config.schema import PersonaConfig
from assistant.events import (
    PlaybackFinished,
    PlaybackStarted,
    ReplyDone,
    ScriptedLine,
    Subtitle,
    TurnDone,
    UserTurnReady,
)
from assistant.memory.recall import MemoryContext
from assistant.text import join_parts

#: How long an interrupted reply waits for the output's report of its cut sentence before it is recorded.
CUT_REPORT_WAIT_S = 0.5

#: User turns whose stored words are kept (a continued turn stores only what it adds to one of these).
KEEP_RECORDED_TURNS = 8


class ConversationMemory(Protocol):
    """What the reply stage needs from memory (assistant.memory provides it; blocking calls)."""

    def record(self, persona: str, role: str, text: str, *, turn_id: int, emotion: str | None = None,
               emotion_score: float | None = None, is_interrupted: bool = False) -> object: ...

    def view(self, persona: str, user_text: str) -> MemoryContext: ...

    def after_turn(self, persona: str) -> None:
        """On the event loop, after a reply is recorded (starts background summaries when due)."""

    def pause_background(self) -> None:
        """A user turn starts: background work that competes for the engine stops for now."""


@dataclass
class ReplyAccount:
    """A reply in flight: its sentences and how much of each has been played."""

    turn_id: int
    #: Who says the reply (after a persona switch, the new persona).
    persona: str
    sentences: list[str] = field(default_factory=list)
    #: Sentence index -> the fraction of it played.
    played: dict[int, float] = field(default_factory=dict)
    #: Sentences whose playback began (each gets a PlaybackFinished, also when it is cut).
    started: set[int] = field(default_factory=set)
    #: The reply is written (ReplyDone given): no more sentences come.
    is_written: bool = False
    #: Whether a scripted line is part of the reply (then the kept conversation holds the spoken lines).
    has_scripted: bool = False
    #: Set when the output has reported how much of each started sentence of a cut reply was heard.
    cut_reported: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def text(self) -> str:
        """Every sentence of the reply, joined (what was written for speech, heard or not)."""
        return joined(self.sentences)

    @property
    def heard(self) -> str:
        """Only what was heard: whole sentences played, and the played part of a cut one (with …)."""
        spoken: list[str] = []
        for index, sentence in enumerate(self.sentences):
            fraction = self.played.get(index, 0.0)
            if fraction >= 0.999:
                spoken.append(sentence)
            elif fraction > 0:
                spoken.append(sentence[: max(1, int(len(sentence) * fraction))] + "…")
                break
            else:
                break
        return joined(spoken)

    @property
    def is_heard(self) -> bool:
        """Written, and every sentence reported played (or cut)."""
        return self.is_written and len(self.played) >= len(self.sentences)

    @property
    def is_cut_reported(self) -> bool:
        """Every sentence that began to play has its report of how much was heard."""
        return self.started <= self.played.keys()


def joined(sentences: list[str]) -> str:
    """Sentences as one text: a space after English ones, none between Japanese ones."""
    return "".join(s if s.endswith((" ", "\n")) or not s[-1:].isascii() else s + " " for s in sentences).strip()


def played_fraction(event: PlaybackFinished) -> float:
    """How much of the sentence was played (a sentence without a length counts as played whole)."""
    return 1.0 if event.duration_s <= 0 else min(1.0, event.played_s / event.duration_s)


class TurnLedger:
    """The accounts of the replies in flight, and what of them goes to memory.

    ``is_voiced`` False: nothing is played (text chat), so a written reply counts as heard whole."""

    def __init__(self, memory: ConversationMemory | None = None, is_voiced: bool = True) -> None:
        self.memory = memory
        self.is_voiced = is_voiced
        self._accounts: dict[int, ReplyAccount] = {}
        #: The segment texts of recent user turns as memory stored them (a merged turn stores only its new words).
        self._recorded_parts: dict[int, tuple[str, ...]] = {}
        #: Recent turns that were lines nobody asked for (never remembered).
        self._unasked: set[int] = set()

    def account(self, turn_id: int) -> ReplyAccount | None:
        """The account of ``turn_id``'s reply while it is in flight."""
        return self._accounts.get(turn_id)

    @property
    def in_flight(self) -> list[int]:
        """The turns whose replies are not yet heard to the end (or cut)."""
        return list(self._accounts)

    # ------------------------------------------------------------------ the reply

    def open(self, turn_id: int, persona: str) -> ReplyAccount:
        account = self._accounts[turn_id] = ReplyAccount(turn_id=turn_id, persona=persona)
        return account

    def line(self, turn: UserTurnReady, persona: PersonaConfig, text: str, language: str | None = None,
             is_scripted: bool = False) -> Subtitle:
        """The next sentence of ``turn``'s reply, said by ``persona``, as its Subtitle (numbered in order).
        A scripted line is in the persona's language; a model's sentence without its own, in the user's."""
        account = self._accounts[turn.turn_id]
        index = len(account.sentences)
        account.sentences.append(text)
        account.has_scripted = account.has_scripted or is_scripted
        if language is None:
            language = persona.language if is_scripted else (turn.language or persona.language)
        return Subtitle(turn_id=turn.turn_id, persona=persona.id, sentence_index=index, text=text,
                        language=language, is_scripted=is_scripted)

    def unasked_line(self, line: ScriptedLine, persona: PersonaConfig) -> Subtitle:
        """A line nobody asked for (bedtime's presence line, its last good night) as its turn's only
        sentence, in the persona's language; memory and the kept conversation never hold it."""
        account = self.open(line.turn_id, persona.id)
        account.sentences.append(line.text)
        account.has_scripted = True
        self._unasked.add(line.turn_id)
        while len(self._unasked) > KEEP_RECORDED_TURNS:
            self._unasked.discard(min(self._unasked))
        return Subtitle(turn_id=line.turn_id, persona=persona.id, sentence_index=0, text=line.text,
                        language=persona.language, is_scripted=True, fade_out_s=line.fade_out_s)

    def is_unasked(self, turn_id: int) -> bool:
        """Whether ``turn_id`` was a line nobody asked for (`unasked_line`)."""
        return turn_id in self._unasked

    def finish(self, turn_id: int) -> tuple[ReplyDone, TurnDone | None]:
        """The reply is written: its ReplyDone, and its TurnDone when everything is heard already."""
        account = self._accounts[turn_id]
        account.is_written = True
        done = ReplyDone(turn_id=turn_id, persona=account.persona, text=account.text,
                         sentence_count=len(account.sentences))
        if not self.is_voiced:
            account.played = dict.fromkeys(range(len(account.sentences)), 1.0)
        return done, self._done(turn_id)

    # ------------------------------------------------------------------ playback

    def started(self, event: PlaybackStarted) -> None:
        account = self._accounts.get(event.turn_id)
        if account is not None:
            account.started.add(event.sentence_index)

    def played(self, event: PlaybackFinished, is_cancelled: bool = False) -> TurnDone | None:
        """A sentence's playback report; the turn's TurnDone once its last one is in. The report of a
        cancelled turn (``is_cancelled``) only says how much of the cut sentence was heard."""
        account = self._accounts.get(event.turn_id)
        if account is None:
            return None
        account.played[event.sentence_index] = played_fraction(event)
        if is_cancelled:
            if account.is_cut_reported:
                account.cut_reported.set()
            return None
        return self._done(event.turn_id)

    def _done(self, turn_id: int) -> TurnDone | None:
        account = self._accounts.get(turn_id)
        if account is None or not account.is_heard:
            return None
        del self._accounts[turn_id]
        return TurnDone(turn_id=turn_id, persona=account.persona, spoken_text=account.heard)

    async def cut(self, turn_id: int) -> TurnDone | None:
        """An interrupted reply: wait briefly for the output's report of the cut sentence, close the account,
        and say what was heard (a TurnDone marked interrupted; the turn's end is the Interrupted event)."""
        account = self._accounts.get(turn_id)
        if account is None:
            return None
        if self.is_voiced and not account.is_cut_reported:  # a sentence was cut while playing
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(account.cut_reported.wait(), CUT_REPORT_WAIT_S)
        self._accounts.pop(turn_id, None)
        return TurnDone(turn_id=turn_id, persona=account.persona, spoken_text=account.heard, is_interrupted=True)

    # ------------------------------------------------------------------ memory

    async def remember_user(self, turn: UserTurnReady, persona: str) -> None:
        """Commit the user's words of ``turn`` to memory (only those memory has not stored yet)."""
        await self._record(persona, "user", self._unrecorded_words(turn), turn_id=turn.turn_id,
                           emotion=turn.emotion, emotion_score=turn.emotion_score if turn.emotion else None)

    async def remember(self, done: TurnDone) -> None:
        """Record what ``done`` says was heard of the reply (nothing when nothing was heard, nothing of a
        line nobody asked for)."""
        if not done.spoken_text or self.is_unasked(done.turn_id):
            return
        await self._record(done.persona, "assistant", done.spoken_text, turn_id=done.turn_id,
                           is_interrupted=done.is_interrupted)
        if self.memory is not None:
            self.memory.after_turn(done.persona)

    def _unrecorded_words(self, turn: UserTurnReady) -> str:
        """What memory has not heard yet of this turn: a turn that continues an earlier one (the user went on
        before its reply was heard) repeats that turn's words, which are stored already."""
        parts = turn.parts or (turn.text,)
        earlier = self._recorded_parts.pop(turn.merged_from, ()) if turn.merged_from is not None else ()
        self._recorded_parts[turn.turn_id] = parts
        while len(self._recorded_parts) > KEEP_RECORDED_TURNS:
            self._recorded_parts.pop(next(iter(self._recorded_parts)))
        if earlier and parts[: len(earlier)] == earlier:
            parts = parts[len(earlier):]
        return join_parts(list(parts))

    async def _record(self, persona: str, role: str, text: str, *, turn_id: int, emotion: str | None = None,
                      emotion_score: float | None = None, is_interrupted: bool = False) -> None:
        if self.memory is None or not text.strip():
            return
        await asyncio.to_thread(self.memory.record, persona, role, text, turn_id=turn_id, emotion=emotion,
                                emotion_score=emotion_score, is_interrupted=is_interrupted)
