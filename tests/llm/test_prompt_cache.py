"""Cache-shaped prompts: every request of a conversation starts with the previous request's messages, byte for
byte; the turn's context rides beside the user's words; the kept conversation drops its older half at once."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from assistant.config import load_settings
from assistant.config.loader import Settings
from assistant.conversation.reply import ReplyStage
from assistant.events import TurnDone, UserTurnReady
from assistant.llm.engine import ChatMessage
from assistant.llm.prompt import PromptHistory, UserMood, build_messages, prefix_messages
from assistant.llm.router import EngineRouter, override_routing
from assistant.memory.recall import MemoryContext
from assistant.pipeline.bus import Bus
from assistant.pipeline.runtime import Pipeline
from tests.fixtures.llm import ChatPeer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(ROOT / "config", "cpu")


def test_the_system_message_holds_nothing_of_the_turn(settings: Settings) -> None:
    persona = settings.personas["yuuri"]
    memory = MemoryContext(summary="仕事の話をした。", facts=["the user's name: さくら"],
                           snippets=["[2026-11-20] user: 猫を飼っています"])
    plain = build_messages(settings.rules, persona, "こんばんは")
    rich = build_messages(settings.rules, persona, "眠れないの", "normal", UserMood("sad", 0.9), memory)
    assert plain[0] == rich[0] and plain[0].role == "system"
    assert plain[:-1] == prefix_messages(settings.rules, persona)
    assert plain[-1] == ChatMessage("user", "こんばんは")
    last = rich[-1].content
    assert last.startswith("眠れないの") and "さくら" in last and "猫を飼っています" in last and "仕事の話" in last
    assert "さくら" not in rich[0].content
    # Bedtime changes the system message (a mode switch is rare); the reassurance rides with the turn.
    night = build_messages(settings.rules, persona, "眠れないの", "bedtime", UserMood("fearful", 0.8))
    assert settings.rules.bedtime_overlay.strip() in night[0].content
    comfort = settings.rules.reassurance_first.strip().rstrip("。")
    assert comfort in night[-1].content and comfort not in night[0].content


def test_context_already_in_the_conversation_is_not_repeated(settings: Settings) -> None:
    persona = settings.personas["yuuri"]
    memory = MemoryContext(facts=["the user's name: さくら"])
    first = build_messages(settings.rules, persona, "こんばんは", memory=memory)
    past = [*first[len(prefix_messages(settings.rules, persona)):], ChatMessage("assistant", "こんばんは。")]
    second = build_messages(settings.rules, persona, "元気だよ", memory=memory, history=past)
    assert second[-1].content == "元気だよ"
    assert second[:len(first)] == first


def test_the_kept_conversation_drops_its_older_half_at_once() -> None:
    history = PromptHistory(budget_chars=1200)
    snapshots: list[list[ChatMessage]] = []
    for turn in range(1, 40):
        history.add_user(turn, f"user {turn:02d} " + "x" * 20)
        history.set_reply(turn, f"reply {turn:02d} " + "y" * 20)
        snapshots.append(history.messages)
    misses = sum(1 for before, after in itertools.pairwise(snapshots) if after[:len(before)] != before)
    assert 1 <= misses <= 39 // 4  # one cache miss every several turns, not one every turn
    assert history.chars <= 1200 and history.messages[0].role == "user"
    assert history.messages[-1].content.startswith("reply 39")


def test_a_cut_reply_is_kept_as_heard() -> None:
    history = PromptHistory()
    history.add_user(1, "hello")
    history.set_reply(1, "Hello there. How was your day? Tell me everything.")
    history.set_reply(1, "Hello there. How was…")
    assert [m.content for m in history.messages] == ["hello", "Hello there. How was…"]


async def test_requests_of_a_conversation_only_append(start_chat_peer: Callable[..., Awaitable[ChatPeer]],
                                                      settings: Settings) -> None:
    """Three turns through the real reply stage against a streaming server: each request starts with the
    whole previous request plus the reply the model gave."""
    peer = await start_chat_peer("そうだね、はい。", is_endless=True, interval=0.002)
    router = EngineRouter(override_routing(peer.base_url, "peer-model"))
    reply = ReplyStage(settings.rules, settings.personas, "yuuri", router, is_voiced=False)
    bus = Bus()
    done: list[TurnDone] = []
    bus.subscribe(lambda e: done.append(e) if isinstance(e, TurnDone) else None)
    async with Pipeline([reply], bus) as pipeline:
        for turn, text in enumerate(["こんばんは", "今日は雨だったね", "Good night"], start=1):
            pipeline.emit(UserTurnReady(turn_id=turn, text=text, emotion="sad" if turn == 2 else None,
                                        emotion_score=0.9 if turn == 2 else None))
            while len(done) < turn:
                await pipeline.wait_idle()
    await router.aclose()
    requests = [r.body["messages"] for r in peer.requests]
    assert len(requests) == 3
    for before, after in itertools.pairwise(requests):
        assert after[:len(before)] == before
        assert after[len(before)]["role"] == "assistant" and after[len(before)]["content"]
    assert requests[1][-1]["content"].startswith("今日は雨だったね") and "声の様子" in requests[1][-1]["content"]
