"""The embedded engine keeps its evaluated prompt between turns (real default model, cpu profile): a later turn
evaluates only what is new, also after a switch to another persona and back."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from assistant.config import load_settings
from assistant.config.loader import Settings
from assistant.config.schema import GenerationConfig
from assistant.llm.embedded import EmbeddedEngine
from assistant.llm.engine import ChatMessage
from assistant.llm.prompt import PromptHistory, build_messages
from assistant.text import has_japanese
from assistant.threads import CORES

ROOT = Path(__file__).resolve().parents[2]
SHORT = GenerationConfig(max_tokens=12, temperature=0.0)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(ROOT / "config", "cpu")


@pytest.fixture(scope="module")
def default_engine(settings: Settings) -> EmbeddedEngine:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is built by .ci/setup")
    name = settings.routing.personas["yuuri"]
    return EmbeddedEngine(name, settings.routing.engines[name], settings.config_dir)


async def _turn(engine: EmbeddedEngine, settings: Settings, persona: str, history: PromptHistory, turn: int,
                text: str) -> list[ChatMessage]:
    messages = build_messages(settings.rules, settings.personas[persona], text, history=history.messages)
    history.add_user(turn, messages[-1].content)
    reply = "".join([piece async for piece in engine.stream(messages, SHORT)])
    history.set_reply(turn, reply)
    return messages


async def test_a_later_turn_evaluates_only_the_new_turn(default_engine: EmbeddedEngine, settings: Settings) -> None:
    await default_engine.check()
    assert default_engine.prompt_style == "chat"
    history = PromptHistory()
    lengths: list[tuple[int, int]] = []
    for turn, text in enumerate(["こんばんは。", "今日は雨だったよ。", "Do you like tea?"], start=1):
        await _turn(default_engine, settings, "yuuri", history, turn, text)
        stats = default_engine.last_stats
        assert stats is not None
        lengths.append((stats.prompt_tokens, stats.evaluated_tokens))
    (first, _), (second, new_2), (third, new_3) = lengths
    assert first < second < third
    # Turns 2 and 3 reuse everything up to the previous reply; only that reply's end and the new turn are read.
    assert new_2 < 60 and new_3 < 60, lengths
    assert new_3 < third // 4


async def test_a_persona_switch_keeps_each_personas_evaluated_prompt(default_engine: EmbeddedEngine,
                                                                     settings: Settings) -> None:
    yuuri, miyu = PromptHistory(), PromptHistory()
    await _turn(default_engine, settings, "yuuri", yuuri, 1, "ただいま。")
    yuuri_prompt = default_engine.last_stats.prompt_tokens  # type: ignore[union-attr]
    await _turn(default_engine, settings, "miyu", miyu, 2, "美遊、いる？")
    # Only the rules, which both personas' prompts start with, are shared.
    assert default_engine.last_stats.reused_tokens < yuuri_prompt - 100  # type: ignore[union-attr]
    await _turn(default_engine, settings, "yuuri", yuuri, 3, "また悠璃と話したいな。")
    stats = default_engine.last_stats
    assert stats is not None and stats.restore_s > 0
    assert stats.reused_tokens >= yuuri_prompt - 2 and stats.evaluated_tokens < 60, stats


async def test_the_model_waits_while_work_the_user_waits_for_holds_the_cores(
        default_engine: EmbeddedEngine, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A transcription or a reply's first clause holds `CORES`: the model writes no token until it is done."""
    await default_engine.check()
    messages = build_messages(settings.rules, settings.personas["yuuri"], "こんばんは。", history=[])
    release = threading.Event()
    held = threading.Event()

    def hold() -> None:
        with CORES.urgent():
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    monkeypatch.setenv("SAIJIN_CORE_PRIORITY", "on")
    try:
        holder.start()
        held.wait(10)
        stream = default_engine.stream(messages, SHORT)
        first = asyncio.ensure_future(stream.__anext__())
        done, _ = await asyncio.wait({first}, timeout=1.0)
        assert not done, "a token came while the cores were held"
        release.set()
        assert await asyncio.wait_for(first, timeout=120)
        await stream.aclose()
    finally:
        release.set()
        holder.join(10)


async def test_a_prefill_while_the_user_speaks_leaves_the_request_only_the_users_words(
        default_engine: EmbeddedEngine, settings: Settings) -> None:
    """`prefill` reads the conversation and the template's opening of the next user message; the request
    then evaluates only what follows (the user's words and the assistant's opening). (The reply may differ
    by a word: llama.cpp's sums differ slightly with how a prompt is split into batches.)"""
    persona = settings.personas["yuuri"]
    replies: list[str] = []
    evaluated: list[int] = []
    for prefill in (False, True):
        history = PromptHistory()
        await _turn(default_engine, settings, "yuuri", history, 1, "ただいま。")
        if prefill:
            await default_engine.prefill(build_messages(settings.rules, persona, "", history=history.messages)[:-1])
        messages = await _turn(default_engine, settings, "yuuri", history, 2, "今日は雨だったよ。")
        stats = default_engine.last_stats
        assert stats is not None
        evaluated.append(stats.evaluated_tokens)
        replies.append(history.messages[-1].content)
        assert messages[-1].content == "今日は雨だったよ。"
    without, with_prefill = evaluated
    # Qwen's template opens a user message with <|im_end|> \n <|im_start|> user \n: those are read ahead.
    assert with_prefill <= without - 4, evaluated
    assert all(has_japanese(reply) for reply in replies), replies
