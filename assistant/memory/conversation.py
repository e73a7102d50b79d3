"""The memory as a conversation uses it: record each turn (and the facts in it), and recall for the next prompt.

``PersonaMemory`` fits the reply stage's ``ConversationMemory`` protocol. Its methods block (SQLite): call
them through ``asyncio.to_thread``. ``after_turn`` is the exception: call it on the event loop after a turn is
recorded; it starts a background summary when one is due and returns at once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from assistant.config.schema import MemoryConfig
from assistant.memory.facts import remember_facts
from assistant.memory.recall import MemoryContext, recall_for_prompt
from assistant.memory.store import MemoryStore
from assistant.memory.summaries import SummarizeFn, Summarizer

if TYPE_CHECKING:
    from assistant.config.loader import Settings

log = logging.getLogger(__name__)


class PersonaMemory:
    """Turns, facts, summaries and recall for every persona, over one ``MemoryStore``."""

    def __init__(self, store: MemoryStore, config: MemoryConfig, summarize: SummarizeFn | None = None) -> None:
        self.store = store
        self.config = config
        self.summarizer = Summarizer(store, summarize, config.summary_every) if summarize else None

    @classmethod
    def from_settings(cls, settings: Settings, summarize: SummarizeFn | None = None) -> PersonaMemory:
        return cls(MemoryStore.from_settings(settings), settings.assistant.memory, summarize)

    def record(self, persona: str, role: str, text: str, *, turn_id: int | None = None, emotion: str | None = None,
               emotion_score: float | None = None, is_interrupted: bool = False) -> int:
        """Commit one turn (before this returns) and remember the facts a user turn states; returns its row id."""
        row_id = self.store.add_turn(persona, "user" if role == "user" else "assistant", text, emotion=emotion,
                                     emotion_score=emotion_score, is_interrupted=is_interrupted, turn_id=turn_id)
        if role == "user":
            try:
                remember_facts(self.store, persona, text, source_turn=row_id)
            except Exception:  # a fact is a bonus; the turn itself is stored
                log.warning("memory: could not store the facts of turn %d", row_id, exc_info=True)
        return row_id

    def view(self, persona: str, user_text: str, current_turn: int | None = None) -> MemoryContext:
        """Summary, facts, recalled snippets and recent turns for the prompt answering ``user_text``."""
        config = self.config
        return recall_for_prompt(self.store, persona, user_text, config.prompt_budget_chars, config.recent_turns,
                                 config.recall_limit, current_turn=current_turn)

    def after_turn(self, persona: str) -> None:
        """On the event loop: start a background summary of ``persona`` when ``summary_every`` turns gathered."""
        if self.summarizer is not None:
            self.summarizer.maybe_schedule(persona)

    def pause_background(self) -> None:
        """A user turn starts: stop a summary in progress so it does not hold the engine (it is retried later)."""
        if self.summarizer is not None:
            self.summarizer.cancel()

    async def aclose(self) -> None:
        """Cancel summaries in progress and close the database."""
        if self.summarizer is not None:
            await self.summarizer.aclose()
        self.store.close()
