"""LLM engines: the embedded GGUF model streams a persona reply; cancelling a turn closes the HTTP stream."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from assistant.config import load_settings
from assistant.config.schema import EngineConfig, GenerationConfig
from assistant.conversation.reply import ReplyStage
from assistant.errors import EngineUnavailable
from assistant.events import Event, StageTiming, Subtitle, UserTurnReady
from assistant.llm.embedded import EmbeddedEngine, transcript_prompt
from assistant.llm.engine import ChatMessage
from assistant.llm.openai_engine import OpenAIEngine
from assistant.llm.router import EngineRouter, override_routing
from assistant.pipeline.assemble import Conversation, Options
from assistant.pipeline.bus import Bus
from assistant.pipeline.runtime import Pipeline
from tests.fixtures.llm import ChatPeer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def embedded_engine() -> EmbeddedEngine:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is built by .ci/setup")
    return EmbeddedEngine("AI_2", EngineConfig(kind="embedded", model="offline:gemma3-270m", n_ctx=1024))


async def test_embedded_engine_streams_pieces(embedded_engine: EmbeddedEngine) -> None:
    messages = [ChatMessage("system", "あなたは美遊です。", name="美遊"), ChatMessage("user", "こんにちは")]
    pieces = [p async for p in embedded_engine.stream(messages, GenerationConfig(max_tokens=24, temperature=0.0))]
    assert len(pieces) >= 2, pieces  # streamed, not one blob
    assert "".join(pieces).strip()
    assert "\n" not in "".join(pieces)  # one spoken line


async def test_embedded_engine_stops_when_the_stream_is_closed(embedded_engine: EmbeddedEngine) -> None:
    messages = [ChatMessage("user", "Tell me a very long story about the sea.")]
    stream = embedded_engine.stream(messages, GenerationConfig(max_tokens=400))
    first = await anext(stream)
    await stream.aclose()
    assert first
    # The worker releases the model at its next token; a new request is served right after.
    again = [p async for p in embedded_engine.stream(messages, GenerationConfig(max_tokens=4))]
    assert again


def test_transcript_prompt_names_the_persona() -> None:
    prompt = transcript_prompt([ChatMessage("system", "ルール", name="悠璃"), ChatMessage("user", "こんばんは"),
                                ChatMessage("assistant", "こんばんは。"), ChatMessage("user", "眠れないの")])
    assert prompt.startswith("ルール")
    assert prompt.endswith("相手: 眠れないの\n悠璃:")


async def test_chat_turn_on_the_embedded_engine_in_the_personas_format(embedded_engine: EmbeddedEngine,
                                                                       config_dir: Path) -> None:
    settings = load_settings(config_dir, "cpu")
    events: list[Event] = []
    async with Conversation(settings, Options(persona="miyu", use_memory=False)) as conversation:
        conversation.bus.subscribe(events.append)
        result = await conversation.say("こんにちは", timeout=120)
    assert not result.errors, result.errors
    assert result.persona == "miyu" and result.sentences
    subtitles = [e for e in events if isinstance(e, Subtitle)]
    assert [s.sentence_index for s in subtitles] == list(range(len(subtitles)))
    assert all(s.persona == "miyu" and s.text.strip() for s in subtitles)
    assert result.latency is not None and "llm_first_token" in result.latency.stages_ms


async def test_cancelling_a_turn_closes_the_engines_http_stream(
        start_chat_peer: Callable[..., Awaitable[ChatPeer]]) -> None:
    peer = await start_chat_peer("そうだね、はい。", is_endless=True, interval=0.05)
    settings = load_settings(ROOT / "config", "cpu")
    router = EngineRouter(override_routing(peer.base_url, "peer-model"))
    reply = ReplyStage(settings.rules, settings.personas, "miyu", router, is_voiced=False)
    bus = Bus()
    subtitles: list[Subtitle] = []
    bus.subscribe(lambda e: subtitles.append(e) if isinstance(e, Subtitle) else None)
    async with Pipeline([reply], bus) as pipeline:
        pipeline.emit(UserTurnReady(turn_id=1, text="こんにちは"))
        while len(subtitles) < 2:
            await asyncio.sleep(0.01)
        pipeline.cancel_turn(1, "test")
        await asyncio.wait_for(peer.disconnected.wait(), 2)
        count = len(subtitles)
        sent = peer.chunks_sent
        await asyncio.sleep(0.3)
        assert len(subtitles) == count  # nothing of the cancelled turn after the cancel
        assert peer.chunks_sent <= sent + 1
    await router.aclose()
    assert peer.requests[0].body["model"] == "peer-model" and peer.requests[0].body["stream"] is True


async def test_an_unreachable_engine_is_one_clear_line() -> None:
    engine = OpenAIEngine("AI_1", EngineConfig(kind="vllm", base_url="http://127.0.0.1:9/v1", model="m"))
    with pytest.raises(EngineUnavailable) as caught:
        async for _ in engine.stream([ChatMessage("user", "hi")], GenerationConfig()):
            pass
    message = str(caught.value)
    assert "http://127.0.0.1:9/v1" in message and "connection refused" in message and "saijin llm serve" in message
    await engine.aclose()


def test_stage_timings_are_events() -> None:
    timing = StageTiming(turn_id=1, stage="asr", started_at=1.0, ended_at=1.25)
    assert timing.ms == 250.0
