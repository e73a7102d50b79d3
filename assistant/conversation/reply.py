"""The reply stage: answers a user turn as the current persona — scripted lines or the LLM, sentence by
sentence — and records in memory what was actually said."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from assistant.config.schema import PersonaConfig, RulesConfig
from assistant.conversation.responders import Responder, Scripted, Session, pick
from assistant.errors import SaijinError
from assistant.events import (
    Error,
    Event,
    Expression,
    Interrupted,
    Mode,
    Notice,
    PlaybackFinished,
    PlaybackStarted,
    ReplyDone,
    ScriptedLine,
    Speaker,
    Subtitle,
    TurnDone,
    UserTurnReady,
    VoiceStarted,
    now,
)
from assistant.llm.engine import ChatMessage
from assistant.llm.guard import ReplyGuard
from assistant.llm.prompt import PromptHistory, UserMood, build_messages, prefix_messages, reply_guard
from assistant.llm.router import EngineRouter
from assistant.llm.sentences import ExpressionTag, Sentence, SpokenTextStream
from assistant.memory.recall import MemoryContext
from assistant.stage import Stage, timing
from assistant.text import join_parts

log = logging.getLogger(__name__)


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
class _Reply:
    """A reply in flight: its sentences and how much of each has been played."""

    persona: str
    sentences: list[str] = field(default_factory=list)
    played: dict[int, float] = field(default_factory=dict)  # sentence index -> fraction played
    #: Sentences whose playback began (each gets a PlaybackFinished, also when it is cut).
    started: set[int] = field(default_factory=set)
    is_generated: bool = False
    #: The model's own text, as generated (what the kept conversation holds unless the reply was cut).
    raw: list[str] = field(default_factory=list)
    #: Whether a scripted line is part of the reply (then the kept conversation holds the spoken lines).
    has_scripted: bool = False
    #: Chunks of the model's text the guard kept from being spoken (boilerplate, an echo, a note).
    dropped: list[str] = field(default_factory=list)
    #: Set when the output has reported how much of each started sentence of a cut reply was heard.
    cut_reported: asyncio.Event = field(default_factory=asyncio.Event)
    #: False for a line nobody asked for (ScriptedLine): memory and the prompt's history do not keep it.
    is_remembered: bool = True


class ReplyStage(Stage):
    """UserTurnReady -> Subtitle (one per sentence) + Expression, then ReplyDone; TurnDone once spoken.
    ScriptedLine (a line nobody asked for) -> its Subtitle and ReplyDone; TurnDone once spoken."""

    accepts = (UserTurnReady, ScriptedLine, PlaybackFinished, Speaker, Mode)
    urgent = (Interrupted, PlaybackStarted, VoiceStarted)

    def __init__(self, rules: RulesConfig, personas: Mapping[str, PersonaConfig], persona_id: str,
                 router: EngineRouter, memory: ConversationMemory | None = None, mode: str = "normal",
                 responders: Sequence[Responder] = (), is_voiced: bool = True,
                 history_budget_chars: int = 2400) -> None:
        super().__init__()
        self.rules = rules
        self.personas = personas
        self.persona_id = persona_id
        self.mode = mode
        self.router = router
        self.memory = memory
        self.responders = list(responders)
        self.is_voiced = is_voiced
        self._replies: dict[int, _Reply] = {}
        #: The segment texts of recent user turns as memory stored them (a merged turn stores only its new words).
        self._recorded_parts: dict[int, tuple[str, ...]] = {}
        self.history_budget_chars = history_budget_chars
        #: Per persona, the conversation as its engine saw it (the cached prefix of the next request).
        self._histories: dict[str, PromptHistory] = {}

    @property
    def persona(self) -> PersonaConfig:
        return self.personas[self.persona_id]

    async def process(self, event: Event) -> AsyncIterator[Event]:
        if isinstance(event, Speaker):
            if event.persona in self.personas:
                self.persona_id = event.persona
        elif isinstance(event, Mode):
            self.mode = event.value
        elif isinstance(event, UserTurnReady):
            async for produced in self._answer(event):
                yield produced
        elif isinstance(event, ScriptedLine):
            async for produced in self._say_line(event):
                yield produced
        elif isinstance(event, PlaybackFinished):
            reply = self._replies.get(event.turn_id)
            if reply is not None:
                fraction = 1.0 if event.duration_s <= 0 else min(1.0, event.played_s / event.duration_s)
                reply.played[event.sentence_index] = fraction
                if self.ctx is not None and self.ctx.is_cancelled(event.turn_id):
                    if reply.started <= reply.played.keys():  # the report of the cut sentence is in
                        reply.cut_reported.set()
                    return
                done = self._maybe_done(event.turn_id)
                if done is not None:
                    yield done

    def on_urgent(self, event: Event) -> None:
        if isinstance(event, VoiceStarted):
            # The user speaks: a background summary would take the cores from recognising the words (it
            # is retried after the turn).
            if self.memory is not None:
                self.memory.pause_background()
        elif isinstance(event, PlaybackStarted):
            reply = self._replies.get(event.turn_id)
            if reply is not None:
                reply.started.add(event.sentence_index)
        elif isinstance(event, Interrupted):
            reply = self._replies.get(event.turn_id)
            if reply is not None and self.ctx is not None:
                self.ctx.spawn(self._record_cut(event.turn_id, reply))

    # ------------------------------------------------------------------ answering

    async def _answer(self, turn: UserTurnReady) -> AsyncIterator[Event]:
        persona = self.persona
        started = now()
        if self.memory is not None:
            self.memory.pause_background()
        # Memory is read before this turn is written (so it does not recall itself), and the turn is
        # committed before any reply starts.
        memory_view = await self._memory_view(persona.id, turn.text)
        await self._record(persona.id, "user", self._unrecorded_words(turn), turn_id=turn.turn_id,
                           emotion=turn.emotion, emotion_score=turn.emotion_score if turn.emotion else None)
        reply = _Reply(persona=persona.id)
        self._replies[turn.turn_id] = reply
        yield Speaker(persona=persona.id, display_name=persona.display_name)
        # The persona's face reacts to how the user sounds (comfort for a low mood, never anger back).
        reaction = persona.avatar.reaction_to(turn.emotion)
        if reaction:
            yield Expression(persona=persona.id, name=persona.avatar.expressions.get(reaction, reaction),
                             turn_id=turn.turn_id)

        scripted = self._scripted(turn, persona)
        if scripted is not None:
            log.info("turn %d: scripted reply (%s)", turn.turn_id, scripted.reason)
            for produced in scripted.events:
                yield produced
            speaker = self.personas.get(scripted.persona or persona.id, persona)
            reply.persona = speaker.id
            reply.has_scripted = bool(scripted.lines)
            if speaker.id != persona.id:
                yield Speaker(persona=speaker.id, display_name=speaker.display_name)
            for line in scripted.lines:
                yield self._subtitle(turn, reply, speaker, line, is_scripted=True)
            if not scripted.then_llm:
                kept = self._histories.get(speaker.id)  # else rebuilt from memory at its next model turn
                if kept is not None:
                    kept.add_user(turn.turn_id, turn.text)
                async for produced in self._finish(turn, reply):
                    yield produced
                return
            if speaker.id != persona.id:
                persona = speaker
                memory_view = await self._memory_view(persona.id, turn.text)

        mood = UserMood(turn.emotion, turn.emotion_score) if turn.emotion else None
        history = self._history(persona.id, memory_view)
        messages = build_messages(self.rules, persona, turn.text, self.mode, mood, memory_view, history.messages)
        history.add_user(turn.turn_id, messages[-1].content)
        guard = reply_guard(turn.text, mood)
        yield timing(turn.turn_id, "prompt", started)
        log.info("turn %d prompt:\n%s", turn.turn_id, "\n".join(f"[{m.role}] {m.content}" for m in messages))

        stream = SpokenTextStream(self.rules.expression_tags, self.rules.max_sentence_chars, self.rules.max_reply_chars)
        requested = now()
        first_token_at: float | None = None
        first_sentence_at: float | None = None
        # A fallback notice is shown at once, not with the fallback's first words (a small model may be slow).
        pieces = self.router.stream(persona, messages,
                                    notify=lambda message: self.emit(Notice(message=message, turn_id=turn.turn_id)),
                                    on_starting=lambda: self._say_starting(turn, reply, persona))
        try:
            async for piece in pieces:
                reply.raw.append(piece)
                if first_token_at is None:
                    first_token_at = now()
                    yield timing(turn.turn_id, "llm_first_token", requested, first_token_at)
                for item in stream.feed(piece):
                    spoken = self._item(turn, reply, persona, item, guard)
                    if spoken is not None:
                        if isinstance(spoken, Subtitle) and first_sentence_at is None:
                            first_sentence_at = now()
                            yield timing(turn.turn_id, "first_sentence", requested, first_sentence_at)
                        yield spoken
                if stream.is_exhausted:
                    log.info("turn %d: reply reached %d characters; stopping the model", turn.turn_id,
                             self.rules.max_reply_chars)
                    break
            for item in stream.flush():
                spoken = self._item(turn, reply, persona, item, guard)
                if spoken is not None:
                    if isinstance(spoken, Subtitle) and first_sentence_at is None:  # it ended without a stop
                        first_sentence_at = now()
                        yield timing(turn.turn_id, "first_sentence", requested, first_sentence_at)
                    yield spoken
            yield timing(turn.turn_id, "llm_total", requested)
            listening = pick(persona.lines.get("listening", []))
            if not reply.sentences and reply.dropped and listening:
                # Everything the model said was dropped (an echo, boilerplate): a short sign of listening.
                yield self._subtitle(turn, reply, persona, listening, is_scripted=True)
            if not reply.sentences:
                # Nothing speakable came back (an empty reply, or only markup and symbols): say so, quietly.
                yield Notice(message=f"{persona.display_name}'s engine answered nothing that can be spoken",
                             turn_id=turn.turn_id)
        except SaijinError as exc:
            log.info("turn %d: %s", turn.turn_id, exc)
            yield Error(message=str(exc), turn_id=turn.turn_id, ends_turn=False)
            apology = pick(persona.lines.get("engine_down", []))
            if apology:
                # Said alone when nothing came, or after what was said when the model broke off mid-reply.
                yield self._subtitle(turn, reply, persona, apology, is_scripted=True)
        finally:
            await pieces.aclose()
        async for produced in self._finish(turn, reply):
            yield produced

    async def _say_line(self, line: ScriptedLine) -> AsyncIterator[Event]:
        """A line nobody asked for (a bedtime presence line) in the turn opened for it: spoken and ended like
        any reply (TurnDone once played), but kept out of memory and the prompt's history."""
        persona = self.personas.get(line.persona, self.persona)
        reply = self._replies[line.turn_id] = _Reply(persona=persona.id, has_scripted=True, is_generated=True,
                                                     is_remembered=False)
        reply.sentences.append(line.text)
        yield Subtitle(turn_id=line.turn_id, persona=persona.id, sentence_index=0, text=line.text,
                       language=persona.language, is_scripted=True, fade_out_s=line.fade_out_s)
        yield ReplyDone(turn_id=line.turn_id, persona=persona.id, text=line.text, sentence_count=1)
        if not self.is_voiced:
            reply.played = {0: 1.0}
        done = self._maybe_done(line.turn_id)
        if done is not None:
            yield done

    def _scripted(self, turn: UserTurnReady, persona: PersonaConfig) -> Scripted | None:
        session = Session(persona=persona, mode=self.mode)
        for responder in self.responders:
            scripted = responder.respond(turn, session)
            if scripted is not None:
                return scripted
        return None

    def _say_starting(self, turn: UserTurnReady, reply: _Reply, persona: PersonaConfig) -> None:
        line = pick(persona.lines.get("engine_starting", []))
        if line:
            self.emit(self._subtitle(turn, reply, persona, line, is_scripted=True))

    def _item(self, turn: UserTurnReady, reply: _Reply, persona: PersonaConfig,
              item: Sentence | ExpressionTag, guard: ReplyGuard) -> Event | None:
        if isinstance(item, ExpressionTag):
            name = persona.avatar.expressions.get(item.name, item.name)
            return Expression(persona=persona.id, name=name, turn_id=turn.turn_id)
        problem = guard.problem(item.text)
        if problem is not None:
            log.info("turn %d: not speaking %r (%s)", turn.turn_id, item.text, problem)
            reply.dropped.append(item.text)
            return None
        return self._subtitle(turn, reply, persona, item.text, language=item.language)

    def _subtitle(self, turn: UserTurnReady, reply: _Reply, persona: PersonaConfig, text: str,
                  language: str | None = None, is_scripted: bool = False) -> Subtitle:
        index = len(reply.sentences)
        reply.sentences.append(text)
        reply.has_scripted = reply.has_scripted or is_scripted
        if language is None:
            # A scripted line is written in the persona's language, whatever the user spoke.
            language = persona.language if is_scripted else (turn.language or persona.language)
        return Subtitle(turn_id=turn.turn_id, persona=persona.id, sentence_index=index, text=text,
                        language=language, is_scripted=is_scripted)

    async def _finish(self, turn: UserTurnReady, reply: _Reply) -> AsyncIterator[Event]:
        reply.is_generated = True
        generated = "".join(reply.raw).strip()
        kept = self._joined(reply.sentences) if reply.has_scripted or not generated else generated
        if reply.persona in self._histories:
            self._histories[reply.persona].set_reply(turn.turn_id, kept)
        yield ReplyDone(turn_id=turn.turn_id, persona=reply.persona, text=self._joined(reply.sentences),
                        sentence_count=len(reply.sentences))
        if not self.is_voiced:
            reply.played = dict.fromkeys(range(len(reply.sentences)), 1.0)
        done = self._maybe_done(turn.turn_id)
        if done is not None:
            yield done

    def _maybe_done(self, turn_id: int) -> Event | None:
        reply = self._replies.get(turn_id)
        if reply is None or not reply.is_generated or len(reply.played) < len(reply.sentences):
            return None
        del self._replies[turn_id]
        spoken = self._spoken_text(reply)
        if self.ctx is not None and reply.is_remembered:
            self.ctx.spawn(self._record_assistant(turn_id, reply, is_interrupted=False))
        return TurnDone(turn_id=turn_id, persona=reply.persona, spoken_text=spoken)

    # ------------------------------------------------------------------ memory

    @staticmethod
    def _joined(sentences: list[str]) -> str:
        return "".join(s if s.endswith((" ", "\n")) or not s[-1:].isascii() else s + " " for s in sentences).strip()

    def _spoken_text(self, reply: _Reply) -> str:
        """Only what was heard: whole sentences played, and the played part of a cut one (with …)."""
        spoken: list[str] = []
        for index, sentence in enumerate(reply.sentences):
            fraction = reply.played.get(index, 0.0)
            if fraction >= 0.999:
                spoken.append(sentence)
            elif fraction > 0:
                spoken.append(sentence[: max(1, int(len(sentence) * fraction))] + "…")
                break
            else:
                break
        return self._joined(spoken)

    async def _record_cut(self, turn_id: int, reply: _Reply) -> None:
        """An interrupted reply: wait briefly for the output's report of the cut sentence, then record."""
        if self.is_voiced and not reply.started <= reply.played.keys():  # a sentence was cut while playing
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reply.cut_reported.wait(), 0.5)
        self._replies.pop(turn_id, None)
        if not reply.is_remembered:
            return
        # The next request carries what was heard, not what the model had written beyond it.
        if reply.persona in self._histories:
            self._histories[reply.persona].set_reply(turn_id, self._spoken_text(reply))
        await self._record_assistant(turn_id, reply, is_interrupted=True)

    async def _record_assistant(self, turn_id: int, reply: _Reply, is_interrupted: bool) -> None:
        text = self._spoken_text(reply)
        if not text:
            return
        await self._record(reply.persona, "assistant", text, turn_id=turn_id, is_interrupted=is_interrupted)
        if self.memory is not None:
            self.memory.after_turn(reply.persona)

    def _unrecorded_words(self, turn: UserTurnReady) -> str:
        """What memory has not heard yet of this turn: a turn that continues an earlier one (the user went on
        before its reply was heard) repeats that turn's words, which are stored already."""
        parts = turn.parts or (turn.text,)
        earlier = self._recorded_parts.pop(turn.merged_from, ()) if turn.merged_from is not None else ()
        self._recorded_parts[turn.turn_id] = parts
        while len(self._recorded_parts) > 8:
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

    def _history(self, persona: str, memory_view: MemoryContext | None = None) -> PromptHistory:
        """``persona``'s kept conversation; the first time in this process, rebuilt from memory's recent turns."""
        history = self._histories.get(persona)
        if history is None:
            recent = memory_view.recent if memory_view is not None else []
            history = self._histories[persona] = PromptHistory.from_turns(recent, self.history_budget_chars)
        return history

    async def prompt_prefix(self, persona_id: str | None = None) -> list[ChatMessage]:
        """What every next request of ``persona_id`` (default: the current persona) starts with: the system
        message and the conversation so far (for warming an engine's cache)."""
        persona = self.personas[persona_id or self.persona_id]
        if persona.id not in self._histories and self.memory is not None:
            self._history(persona.id, await self._memory_view(persona.id, ""))
        return [*prefix_messages(self.rules, persona, self.mode), *self._history(persona.id).messages]

    async def _memory_view(self, persona: str, user_text: str) -> MemoryContext | None:
        if self.memory is None:
            return None
        return await asyncio.to_thread(self.memory.view, persona, user_text)
