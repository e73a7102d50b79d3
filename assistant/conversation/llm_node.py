"""The model's reply as sentences: one request to the persona's engine, its streamed text cut into clean
sentences as it comes, each checked by the reply guard before it may be spoken.

Like LiveKit Agents' ``llm_node``: :func:`llm_node` is an async generator from a :class:`ReplyRequest` to
chunks — every piece of text the model wrote (:class:`Written`, for the kept conversation and the first-token
time), each speakable :class:`~assistant.llm.sentences.Sentence`, each expression tag, and each chunk the
guard kept from being spoken (:class:`Dropped`: boilerplate, the user's words said back, a note read out).
It stops the model at ``rules.max_reply_chars``; closing it closes the engine's stream (and its HTTP
request). Engine errors propagate (a :class:`~assistant.errors.SaijinError`): the caller decides what the
persona says then. It numbers nothing and emits nothing; the reply stage turns chunks into events.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

from assistant.config.schema import PersonaConfig, RulesConfig
from assistant.llm.engine import ChatMessage
from assistant.llm.guard import ReplyGuard
from assistant.llm.router import EngineRouter
from assistant.llm.sentences import ExpressionTag, Sentence, SpokenTextStream

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplyRequest:
    """One request for a reply: the messages for ``persona``'s engine and the guard of this turn's reply."""

    turn_id: int
    persona: PersonaConfig
    messages: list[ChatMessage]
    guard: ReplyGuard


@dataclass(frozen=True, slots=True)
class Written:
    """A piece of the model's text as it streamed (markup and tags included)."""

    text: str


@dataclass(frozen=True, slots=True)
class Dropped:
    """A clean chunk the guard kept from being spoken, and why ("boilerplate", "echo", "note")."""

    text: str
    problem: str


Chunk = Written | Sentence | ExpressionTag | Dropped


async def llm_node(request: ReplyRequest, router: EngineRouter, rules: RulesConfig, *,
                   notify: Callable[[str], None] | None = None,
                   on_starting: Callable[[], Awaitable[None] | None] | None = None) -> AsyncGenerator[Chunk, None]:
    """Stream ``request`` through ``router`` and yield its chunks in order (see the module docstring).

    ``notify`` hears the router's fallback notices, ``on_starting`` is called when an on-demand engine must
    start first (both at once, not with the first words)."""
    stream = SpokenTextStream(rules.expression_tags, rules.max_sentence_chars, rules.max_reply_chars)
    pieces = router.stream(request.persona, request.messages, notify=notify, on_starting=on_starting)
    try:
        async for piece in pieces:
            yield Written(piece)
            for item in stream.feed(piece):
                yield _guarded(request, item)
            if stream.is_exhausted:
                log.info("turn %d: reply reached %d characters; stopping the model", request.turn_id,
                         rules.max_reply_chars)
                break
        for item in stream.flush():
            yield _guarded(request, item)
    finally:
        await pieces.aclose()


def _guarded(request: ReplyRequest, item: Sentence | ExpressionTag) -> Sentence | ExpressionTag | Dropped:
    if isinstance(item, ExpressionTag):
        return item
    problem = request.guard.problem(item.text)
    if problem is None:
        return item
    log.info("turn %d: not speaking %r (%s)", request.turn_id, item.text, problem)
    return Dropped(item.text, problem)
