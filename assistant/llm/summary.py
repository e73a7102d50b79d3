"""Asking the LLM for a memory summary: the request's messages, and a ``SummarizeFn`` over a chat engine.

The memory (``assistant/memory/summaries.py``) decides when a summary is due and stores it; this module
is the LLM side of it, so the memory needs nothing of the LLM.
"""

from __future__ import annotations

from assistant.config.schema import GenerationConfig
from assistant.llm.engine import ChatEngine, ChatMessage
from assistant.memory.store import Turn
from assistant.memory.summaries import SummarizeFn

SUMMARY_INSTRUCTIONS = {
    "ja": ("これまでの会話の要約を更新してください。ユーザーについて分かったこと（名前、好み、予定、気持ち）と、"
           "話した話題を、箇条書きではなく短い文章で、400字以内にまとめてください。"),
    "en": ("Update the summary of the conversation so far. Keep what was learnt about the user (name, likes, "
           "plans, feelings) and the topics discussed, as short prose of at most 120 words."),
}


def summary_messages(turns: list[Turn], previous: str | None, language: str = "ja") -> list[ChatMessage]:
    """Chat messages asking a model to fold ``turns`` into the ``previous`` summary."""
    instructions = SUMMARY_INSTRUCTIONS.get(language, SUMMARY_INSTRUCTIONS["en"])
    lines = [f"{turn.role}: {turn.text}" for turn in turns]
    parts = []
    if previous:
        parts.append(f"Previous summary:\n{previous}")
    parts.append("New conversation:\n" + "\n".join(lines))
    return [ChatMessage("system", instructions), ChatMessage("user", "\n\n".join(parts))]


def engine_summarizer(engine: ChatEngine, generation: GenerationConfig, language: str = "ja") -> SummarizeFn:
    """A ``SummarizeFn`` that asks ``engine`` (the persona's LLM) with ``summary_messages``."""

    async def summarize(persona: str, turns: list[Turn], previous: str | None) -> str:
        stream = engine.stream(summary_messages(turns, previous, language), generation)
        try:
            return "".join([piece async for piece in stream]).strip()
        finally:
            closer = getattr(stream, "aclose", None)
            if closer is not None:
                await closer()

    return summarize
