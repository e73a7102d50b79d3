"""The reply stage: answers a user turn as the current persona, sentence by sentence, and reports what was
heard. A thin stage over three parts, each testable alone:

- ``reply_plan.py`` chooses who answers: a scripted responder (bedtime, a persona switch) or the model;
- ``llm_node.py`` streams the model's reply into guarded sentences;
- ``accounting.py`` numbers the lines, follows their playback and gives TurnDone and memory what was heard.

The stage itself builds the prompt (rules, persona, mode, memory, the kept conversation per persona) and turns
the parts' values into events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence

from assistant.config.schema import PersonaConfig, RulesConfig
from assistant.conversation.accounting import ConversationMemory, ReplyAccount, TurnLedger
from assistant.conversation.llm_node import Dropped, ReplyRequest, Written, llm_node
from assistant.conversation.reply_plan import plan_reply
from assistant.conversation.responders import Responder, pick
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
    ScriptedLine,
    Speaker,
    TurnDone,
    UserTurnReady,
    VoiceStarted,
    now,
)
from assistant.llm.engine import ChatMessage
from assistant.llm.prompt import PromptHistory, UserMood, build_messages, prefix_messages, reply_guard
from assistant.llm.router import EngineRouter
from assistant.llm.sentences import ExpressionTag
from assistant.memory.recall import MemoryContext
from assistant.stage import Stage, timing

__all__ = ["ConversationMemory", "ReplyStage"]

log = logging.getLogger(__name__)


class ReplyStage(Stage):
    """UserTurnReady -> Subtitle (one per sentence) + Expression, then ReplyDone; TurnDone once heard.
    ScriptedLine (a line nobody asked for) -> its Subtitle and ReplyDone; TurnDone once heard.

    In: Speaker and Mode (the session's persona and mode), PlaybackFinished (how much was heard). Urgent:
    PlaybackStarted, Interrupted (a cut reply is recorded up to what was heard), VoiceStarted (background
    memory work pauses). Who says a line is the ``persona`` of its own Subtitle, ReplyDone and TurnDone."""

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
        self.ledger = TurnLedger(memory, is_voiced)
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
            is_cancelled = self.ctx is not None and self.ctx.is_cancelled(event.turn_id)
            done = self.ledger.played(event, is_cancelled=is_cancelled)
            if done is not None:
                self._remember(done)
                yield done

    def on_urgent(self, event: Event) -> None:
        if isinstance(event, VoiceStarted):
            # The user speaks: a background summary would take the cores from recognising the words (it
            # is retried after the turn).
            if self.memory is not None:
                self.memory.pause_background()
        elif isinstance(event, PlaybackStarted):
            self.ledger.started(event)
        elif isinstance(event, Interrupted) and self.ledger.account(event.turn_id) is not None and self.ctx is not None:
            self.ctx.spawn(self._record_cut(event.turn_id))

    # ------------------------------------------------------------------ answering

    async def _answer(self, turn: UserTurnReady) -> AsyncIterator[Event]:
        persona = self.persona
        started = now()
        if self.memory is not None:
            self.memory.pause_background()
        # Memory is read before this turn is written (so it does not recall itself), and the turn is
        # committed before any reply starts.
        memory_view = await self._memory_view(persona.id, turn.text)
        await self.ledger.remember_user(turn, persona.id)
        account = self.ledger.open(turn.turn_id, persona.id)
        # The persona's face reacts to how the user sounds (comfort for a low mood, never anger back).
        reaction = persona.avatar.reaction_to(turn.emotion)
        if reaction:
            yield Expression(persona=persona.id, name=persona.avatar.expressions.get(reaction, reaction),
                             turn_id=turn.turn_id)

        plan = plan_reply(turn, persona, self.mode, self.responders, self.personas)
        if plan.is_scripted:
            log.info("turn %d: scripted reply (%s)", turn.turn_id, plan.reason)
            for produced in plan.events:
                yield produced
            account.persona = plan.speaker.id
            for line in plan.lines:
                yield self.ledger.line(turn, plan.speaker, line, is_scripted=True)
            if not plan.asks_model:
                kept = self._histories.get(plan.speaker.id)  # else rebuilt from memory at its next model turn
                if kept is not None:
                    kept.add_user(turn.turn_id, turn.text)
                async for produced in self._finish(turn, account, generated=""):
                    yield produced
                return
            if plan.speaker.id != persona.id:
                persona = plan.speaker
                memory_view = await self._memory_view(persona.id, turn.text)

        mood = UserMood(turn.emotion, turn.emotion_score) if turn.emotion else None
        history = self._history(persona.id, memory_view)
        messages = build_messages(self.rules, persona, turn.text, self.mode, mood, memory_view, history.messages)
        history.add_user(turn.turn_id, messages[-1].content)
        request = ReplyRequest(turn_id=turn.turn_id, persona=persona, messages=messages,
                               guard=reply_guard(turn.text, mood))
        yield timing(turn.turn_id, "prompt", started)
        log.info("turn %d prompt:\n%s", turn.turn_id, "\n".join(f"[{m.role}] {m.content}" for m in messages))

        written: list[str] = []
        is_any_dropped = False
        requested = now()
        first_token_at: float | None = None
        first_sentence_at: float | None = None
        # A fallback notice is shown at once, not with the fallback's first words (a small model may be slow).
        chunks = llm_node(request, self.router, self.rules,
                          notify=lambda message: self.emit(Notice(message=message, turn_id=turn.turn_id)),
                          on_starting=lambda: self._say_starting(turn, persona))
        try:
            async for chunk in chunks:
                if isinstance(chunk, Written):
                    written.append(chunk.text)
                    if first_token_at is None:
                        first_token_at = now()
                        yield timing(turn.turn_id, "llm_first_token", requested, first_token_at)
                elif isinstance(chunk, ExpressionTag):
                    yield Expression(persona=persona.id, name=persona.avatar.expressions.get(chunk.name, chunk.name),
                                     turn_id=turn.turn_id)
                elif isinstance(chunk, Dropped):
                    is_any_dropped = True
                else:
                    subtitle = self.ledger.line(turn, persona, chunk.text, language=chunk.language)
                    if first_sentence_at is None:
                        first_sentence_at = now()
                        yield timing(turn.turn_id, "first_sentence", requested, first_sentence_at)
                    yield subtitle
            yield timing(turn.turn_id, "llm_total", requested)
            listening = pick(persona.lines.get("listening", []))
            if not account.sentences and is_any_dropped and listening:
                # Everything the model said was dropped (an echo, boilerplate): a short sign of listening.
                yield self.ledger.line(turn, persona, listening, is_scripted=True)
            if not account.sentences:
                # Nothing speakable came back (an empty reply, or only markup and symbols): say so, quietly.
                yield Notice(message=f"{persona.display_name}'s engine answered nothing that can be spoken",
                             turn_id=turn.turn_id)
        except SaijinError as exc:
            log.info("turn %d: %s", turn.turn_id, exc)
            yield Error(message=str(exc), turn_id=turn.turn_id, ends_turn=False)
            apology = pick(persona.lines.get("engine_down", []))
            if apology:
                # Said alone when nothing came, or after what was said when the model broke off mid-reply.
                yield self.ledger.line(turn, persona, apology, is_scripted=True)
        finally:
            await chunks.aclose()
        async for produced in self._finish(turn, account, generated="".join(written)):
            yield produced

    def _say_starting(self, turn: UserTurnReady, persona: PersonaConfig) -> None:
        line = pick(persona.lines.get("engine_starting", []))
        if line:
            self.emit(self.ledger.line(turn, persona, line, is_scripted=True))

    async def _finish(self, turn: UserTurnReady, account: ReplyAccount, generated: str) -> AsyncIterator[Event]:
        generated = generated.strip()
        # The next request carries the model's own text, unless a scripted line is part of the reply.
        kept = account.text if account.has_scripted or not generated else generated
        if account.persona in self._histories:
            self._histories[account.persona].set_reply(turn.turn_id, kept)
        written, done = self.ledger.finish(turn.turn_id)
        yield written
        if done is not None:
            self._remember(done)
            yield done

    # ------------------------------------------------------------------ memory

    def _remember(self, done: TurnDone) -> None:
        if self.ctx is not None:
            self.ctx.spawn(self.ledger.remember(done))

    async def _say_line(self, line: ScriptedLine) -> AsyncIterator[Event]:
        """A line nobody asked for (a bedtime presence line) in the turn opened for it: spoken and ended like
        any reply (TurnDone once heard), but kept out of memory and the prompt's history."""
        yield self.ledger.unasked_line(line, self.personas.get(line.persona, self.persona))
        written, done = self.ledger.finish(line.turn_id)
        yield written
        if done is not None:
            self._remember(done)
            yield done

    async def _record_cut(self, turn_id: int) -> None:
        done = await self.ledger.cut(turn_id)
        if done is None or self.ledger.is_unasked(turn_id):
            return
        # The next request carries what was heard, not what the model had written beyond it.
        if done.persona in self._histories:
            self._histories[done.persona].set_reply(turn_id, done.spoken_text)
        await self.ledger.remember(done)

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
