"""The model's reply as sentences (llm_node): streamed from a real OpenAI-compatible server (the ChatPeer stand-in),
cut into clean sentences as it comes, the guard's rejects kept out of speech, the model stopped at the reply's
limit, and the engine's stream closed whenever the consumer stops."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from assistant.config.loader import Settings
from assistant.conversation.llm_node import Chunk, Dropped, ReplyRequest, Written, llm_node
from assistant.errors import SaijinError
from assistant.llm.engine import ChatMessage
from assistant.llm.prompt import reply_guard
from assistant.llm.router import EngineRouter, override_routing
from assistant.llm.sentences import ExpressionTag, Sentence
from tests.fixtures.llm import ChatPeer


def request(settings: Settings, user_text: str = "こんにちは") -> ReplyRequest:
    persona = settings.personas["miyu"]
    messages = [ChatMessage("system", "あなたは美遊です。", name=persona.display_name), ChatMessage("user", user_text)]
    return ReplyRequest(turn_id=7, persona=persona, messages=messages, guard=reply_guard(user_text))


async def chunks_of(router: EngineRouter, settings: Settings, req: ReplyRequest) -> list[Chunk]:
    return [chunk async for chunk in llm_node(req, router, settings.rules)]


async def test_the_streamed_text_becomes_clean_sentences_and_expression_tags_in_order(
        settings: Settings, start_chat_peer: Callable[..., Awaitable[ChatPeer]]) -> None:
    reply = "[joy] **やっほー！** 今日はいい天気だね。一緒に散歩しよう？"
    peer = await start_chat_peer(reply, interval=0.0)
    router = EngineRouter(override_routing(peer.base_url, "peer-model"))
    try:
        chunks = await chunks_of(router, settings, request(settings))
    finally:
        await router.aclose()
    # Every piece the model wrote, as written (the kept conversation holds the model's own text).
    assert "".join(c.text for c in chunks if isinstance(c, Written)) == reply
    assert [c for c in chunks if isinstance(c, ExpressionTag)] == [ExpressionTag("joy")]
    sentences = [c for c in chunks if isinstance(c, Sentence)]
    assert "".join(s.text for s in sentences).replace(" ", "") == "やっほー！今日はいい天気だね。一緒に散歩しよう？"
    assert all(s.language == "ja" for s in sentences) and len(sentences) >= 2
    assert not any(isinstance(c, Dropped) for c in chunks)
    # Streamed: the first sentence comes before the model's last piece.
    kinds = [type(c) for c in chunks]
    assert kinds.index(Sentence) < len(kinds) - 1 - kinds[::-1].index(Written)
    assert peer.requests[0].user_text == "こんにちは"


async def test_the_guard_keeps_boilerplate_and_the_users_own_words_out_of_speech(
        settings: Settings, start_chat_peer: Callable[..., Awaitable[ChatPeer]]) -> None:
    user_text = "明日は朝から友だちと映画を見に行く予定なんだ"
    reply = f"{user_text}。何かお手伝いできることはありますか？楽しんできてね！"
    peer = await start_chat_peer(reply, interval=0.0)
    router = EngineRouter(override_routing(peer.base_url, "peer-model"))
    try:
        chunks = await chunks_of(router, settings, request(settings, user_text))
    finally:
        await router.aclose()
    dropped = [c for c in chunks if isinstance(c, Dropped)]
    assert {d.problem for d in dropped} == {"echo", "boilerplate"}
    spoken = "".join(c.text for c in chunks if isinstance(c, Sentence))
    assert spoken == "楽しんできてね！"


async def test_the_model_is_stopped_at_the_replys_limit_and_its_stream_closed(
        settings: Settings, start_chat_peer: Callable[..., Awaitable[ChatPeer]]) -> None:
    peer = await start_chat_peer("そうだね、きょうもいい日だね。", is_endless=True, interval=0.0)
    router = EngineRouter(override_routing(peer.base_url, "peer-model"))
    rules = settings.rules.model_copy(update={"max_reply_chars": 40})
    try:
        chunks = [c async for c in llm_node(request(settings), router, rules)]
        await asyncio.wait_for(peer.disconnected.wait(), 2)
    finally:
        await router.aclose()
    spoken = "".join(c.text for c in chunks if isinstance(c, Sentence))
    assert 0 < len(spoken) <= 40
    assert peer.disconnects == 1


async def test_closing_the_node_early_closes_the_engines_stream(
        settings: Settings, start_chat_peer: Callable[..., Awaitable[ChatPeer]]) -> None:
    peer = await start_chat_peer("はい、そうです。", is_endless=True, interval=0.02)
    router = EngineRouter(override_routing(peer.base_url, "peer-model"))
    node = llm_node(request(settings), router, settings.rules)
    try:
        async for chunk in node:
            if isinstance(chunk, Sentence):
                break
        await node.aclose()
        await asyncio.wait_for(peer.disconnected.wait(), 2)
    finally:
        await router.aclose()
    assert peer.disconnects == 1


async def test_an_unreachable_engine_is_an_error_for_the_caller(settings: Settings) -> None:
    router = EngineRouter(override_routing("http://127.0.0.1:9/v1", "down"))
    try:
        with pytest.raises(SaijinError) as caught:
            async for _ in llm_node(request(settings), router, settings.rules):
                pass
    finally:
        await router.aclose()
    assert "http://127.0.0.1:9/v1" in str(caught.value)
