"""Turn-taking, stage alone: voice segments become numbered turns; merging; barge-in hold, resume, cancel."""

from __future__ import annotations

import asyncio

import numpy as np

from assistant.config.schema import BargeInConfig
from assistant.conversation.turns import TurnController
from assistant.events import (
    Event,
    OutputHold,
    OutputResume,
    PlaybackStarted,
    State,
    TextInput,
    TurnDone,
    UserSpeechEnded,
    UserSpeechStarted,
    UserTranscript,
    UserTurnReady,
    VoiceEnded,
    VoiceStarted,
    now,
)
from assistant.pipeline.stage import _TestContext


def _audio(seconds: float, value: float = 0.1) -> np.ndarray:
    return np.full(int(16000 * seconds), value, dtype=np.float32)


async def _feed(stage: TurnController, events: list[Event]) -> list[Event]:
    out: list[Event] = []
    for event in events:
        out += [e async for e in stage.process(event)]
    return out


async def _controller(min_speech_ms: int = 400) -> tuple[TurnController, _TestContext]:
    ctx = _TestContext()
    stage = TurnController(BargeInConfig(min_speech_ms=min_speech_ms))
    await stage.start(ctx)
    ctx.emitted.clear()
    return stage, ctx


async def test_each_utterance_opens_a_numbered_turn() -> None:
    stage, _ctx = await _controller()
    t = now()
    out = await _feed(stage, [VoiceStarted(onset=t), VoiceEnded(onset=t, speech_end=t + 1, decided_at=t + 1.3,
                                                                  audio=_audio(1))])
    started = [e for e in out if isinstance(e, UserSpeechStarted)]
    ended = [e for e in out if isinstance(e, UserSpeechEnded)]
    assert [e.turn_id for e in started] == [1] and [e.turn_id for e in ended] == [1]
    assert ended[0].speech_end == t + 1 and ended[0].decided_at == t + 1.3
    assert State(value="thinking") in out
    await _feed(stage, [TurnDone(turn_id=1, persona="miyu", spoken_text="…")])
    out = await _feed(stage, [TextInput(text="こんにちは")])
    assert [type(e) for e in out if not isinstance(e, State)] == [UserTranscript, UserTurnReady]
    assert out[0].turn_id == 2 and out[0].language == "ja"


async def test_speaking_again_before_the_reply_is_audible_merges_into_one_turn() -> None:
    stage, ctx = await _controller()
    t = now()
    first, second = _audio(1.0, 0.1), _audio(0.5, 0.2)
    await _feed(stage, [VoiceStarted(onset=t), VoiceEnded(onset=t, speech_end=t + 1, decided_at=t + 1.3, audio=first)])
    out = await _feed(stage, [VoiceStarted(onset=t + 1.6),
                              VoiceEnded(onset=t + 1.6, speech_end=t + 2.1, decided_at=t + 2.4, audio=second)])
    assert ctx.cancelled == {1}  # the reply to half an utterance is cancelled
    ended = [e for e in out if isinstance(e, UserSpeechEnded)]
    assert len(ended) == 1 and ended[0].turn_id == 2
    assert len(ended[0].audio) == len(first) + len(second)
    assert np.array_equal(ended[0].audio[: len(first)], first)


async def _speaking(stage: TurnController) -> float:
    t = now()
    await _feed(stage, [VoiceStarted(onset=t), VoiceEnded(onset=t, speech_end=t + 1, decided_at=t + 1.3,
                                                          audio=_audio(1)),
                        PlaybackStarted(turn_id=1, sentence_index=0, at=now())])
    assert stage.is_audible
    return now()


async def test_a_short_sound_over_the_reply_holds_then_resumes() -> None:
    stage, ctx = await _controller()
    onset = await _speaking(stage)
    out = await _feed(stage, [VoiceStarted(onset=onset)])
    assert [type(e) for e in out] == [OutputHold]
    out = await _feed(stage, [VoiceEnded(onset=onset, speech_end=onset + 0.15, decided_at=onset + 0.45,
                                         audio=_audio(0.15))])
    assert out == [OutputResume()]
    assert not ctx.cancelled and stage.active_turn == 1


async def test_speech_that_lasts_over_the_reply_cancels_it_and_opens_the_next_turn() -> None:
    stage, ctx = await _controller(min_speech_ms=200)
    onset = await _speaking(stage)
    assert [type(e) for e in await _feed(stage, [VoiceStarted(onset=onset)])] == [OutputHold]
    await asyncio.sleep(0.3)  # the voice goes on past min_speech_ms
    await asyncio.gather(*ctx.tasks)
    assert ctx.cancelled == {1}
    assert any(isinstance(e, UserSpeechStarted) and e.turn_id == 2 for e in ctx.emitted)
    out = await _feed(stage, [VoiceEnded(onset=onset, speech_end=onset + 1, decided_at=onset + 1.3, audio=_audio(1))])
    assert [e.turn_id for e in out if isinstance(e, UserSpeechEnded)] == [2]


async def test_without_barge_in_the_user_cannot_talk_over_the_reply() -> None:
    ctx = _TestContext()
    stage = TurnController(BargeInConfig(enabled=False))
    await stage.start(ctx)
    onset = await _speaking(stage)
    assert await _feed(stage, [VoiceStarted(onset=onset)]) == []
    assert not ctx.cancelled
