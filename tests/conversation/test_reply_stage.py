"""The reply stage composed of its parts: a switch by voice is announced by the session before the new
persona's greeting (the reply stage never says Speaker itself); a model reply is spoken sentence by sentence
and done once it has been heard."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from assistant.config.loader import Settings
from assistant.conversation.reply import ReplyStage
from assistant.conversation.responders import PersonaSwitch
from assistant.conversation.session import SessionStage
from assistant.events import (
    Event,
    PlaybackFinished,
    PlaybackStarted,
    ReplyDone,
    SetPersona,
    Speaker,
    Subtitle,
    TurnDone,
    UserTurnReady,
)
from assistant.llm.router import EngineRouter, override_routing
from assistant.pipeline.bus import Bus
from assistant.pipeline.runtime import Pipeline
from assistant.stage import run_stage
from tests.fixtures.llm import ChatPeer


async def test_a_switch_by_voice_is_announced_by_the_session_before_the_new_personas_greeting(
        settings: Settings) -> None:
    router = EngineRouter(override_routing("http://127.0.0.1:9/v1", None))  # never asked: the greeting is scripted
    reply = ReplyStage(settings.rules, settings.personas, "yuuri", router, responders=[PersonaSwitch(settings.personas)],
                       is_voiced=False)
    session = SessionStage(settings.personas, "yuuri")
    bus = Bus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    try:
        async with Pipeline([session, reply], bus) as pipeline:
            await pipeline.wait_idle()
            pipeline.emit(UserTurnReady(turn_id=1, text="美遊に代わって"))
            await pipeline.wait_idle()
            assert reply.persona_id == "miyu" and session.persona_id == "miyu"
    finally:
        await router.aclose()
    order = [e for e in seen if isinstance(e, SetPersona | Speaker | Subtitle | ReplyDone | TurnDone)]
    assert [type(e) for e in order] == [Speaker, SetPersona, Speaker, Subtitle, ReplyDone, TurnDone]
    assert [e.persona for e in order if isinstance(e, Speaker)] == ["yuuri", "miyu"]  # at start, then the switch
    greeting = order[3]
    assert isinstance(greeting, Subtitle) and greeting.persona == "miyu" and greeting.is_scripted
    assert greeting.text in settings.personas["miyu"].lines["switched_in"]
    assert isinstance(order[-1], TurnDone) and order[-1].persona == "miyu" and order[-1].spoken_text == greeting.text


async def test_a_model_reply_is_spoken_sentence_by_sentence_and_done_once_heard(
        settings: Settings, start_chat_peer: Callable[..., Awaitable[ChatPeer]]) -> None:
    peer = await start_chat_peer("[joy] やっほー！今日はいい天気だね。", interval=0.0)
    router = EngineRouter(override_routing(peer.base_url, "peer-model"))
    reply = ReplyStage(settings.rules, settings.personas, "miyu", router, is_voiced=True)
    try:
        out = await run_stage(reply, [UserTurnReady(turn_id=1, text="こんにちは")])
        subtitles = [e for e in out if isinstance(e, Subtitle)]
        assert subtitles and [s.sentence_index for s in subtitles] == list(range(len(subtitles)))
        assert not any(isinstance(e, Speaker | TurnDone) for e in out)  # not heard yet; no Speaker from a reply
        written = next(e for e in out if isinstance(e, ReplyDone))
        assert written.sentence_count == len(subtitles) and written.persona == "miyu"
        played: list[Event] = []
        for s in subtitles:
            played += [PlaybackStarted(turn_id=1, sentence_index=s.sentence_index),
                       PlaybackFinished(turn_id=1, sentence_index=s.sentence_index, played_s=1.0, duration_s=1.0)]
        done = [e for e in await run_stage(reply, played) if isinstance(e, TurnDone)]
    finally:
        await router.aclose()
    assert len(done) == 1 and done[0].spoken_text == written.text
    assert done[0].spoken_text.replace(" ", "") == "やっほー！今日はいい天気だね。"
