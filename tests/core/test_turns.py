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
    SegmentTranscript,
    State,
    TextInput,
    TurnDone,
    TurnDropped,
    UserSpeechEnded,
    UserSpeechPaused,
    UserSpeechStarted,
    UserTranscript,
    UserTurnReady,
    VoiceDropped,
    VoiceEnded,
    VoicePaused,
    VoiceStarted,
    now,
)
from assistant.stage import _TestContext


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


def _said(stage_events: list[Event], kind: type) -> list:
    return [e for e in stage_events if isinstance(e, kind)]


async def test_a_new_question_after_a_long_pause_keeps_the_first_turn_and_its_answer() -> None:
    stage, ctx = await _controller()
    t = now()
    await _feed(stage, [VoiceStarted(onset=t, segment_id=1),
                        VoiceEnded(onset=t, speech_end=t + 1, decided_at=t + 1.2, audio=_audio(1), segment_id=1),
                        SegmentTranscript(segment_id=1, text="今日は何曜日？", language="ja")])
    out = await _feed(stage, [VoiceStarted(onset=t + 3.6, segment_id=2),
                              VoiceEnded(onset=t + 3.6, speech_end=t + 5, decided_at=t + 5.2, audio=_audio(1.4),
                                         segment_id=2)])
    assert not ctx.cancelled  # the first question is still answered
    ended = _said(out, UserSpeechEnded)
    assert [e.turn_id for e in ended] == [2] and ended[0].segment_ids == (2,) and ended[0].merged_from is None
    assert stage.answering == [1, 2]
    await _feed(stage, [TurnDone(turn_id=1, persona="miyu", spoken_text="月曜日だよ。")])
    assert stage.answering == [2]


async def test_unfinished_words_merge_even_after_a_long_pause_and_name_their_segments() -> None:
    stage, ctx = await _controller()
    t = now()
    first, second = _audio(1.0, 0.1), _audio(0.5, 0.2)
    await _feed(stage, [VoiceStarted(onset=t, segment_id=1),
                        VoiceEnded(onset=t, speech_end=t + 1, decided_at=t + 1.2, audio=first, segment_id=1),
                        SegmentTranscript(segment_id=1, text="今日は仕事で疲れちゃって", language="ja")])
    out = await _feed(stage, [VoiceStarted(onset=t + 3.0, segment_id=2),
                              VoiceEnded(onset=t + 3.0, speech_end=t + 3.5, decided_at=t + 3.7, audio=second,
                                         segment_id=2)])
    assert ctx.cancelled == {1}
    ended = _said(out, UserSpeechEnded)[0]
    assert ended.turn_id == 2 and ended.merged_from == 1
    assert ended.segment_ids == (1, 2) and ended.segment_starts == (0, len(first))
    assert ended.onset == t  # the turn began with its first words


async def test_a_cough_after_going_on_leaves_the_earlier_words_as_the_turn() -> None:
    stage, ctx = await _controller()
    t = now()
    first = _audio(1.0)
    await _feed(stage, [VoiceStarted(onset=t, segment_id=1),
                        VoiceEnded(onset=t, speech_end=t + 1, decided_at=t + 1.2, audio=first, segment_id=1)])
    out = await _feed(stage, [VoiceStarted(onset=t + 1.5, segment_id=2),
                              VoiceDropped(onset=t + 1.5, speech_end=t + 1.6, segment_id=2)])
    assert ctx.cancelled == {1}
    ended = _said(out, UserSpeechEnded)
    assert len(ended) == 1 and ended[0].turn_id == 2 and ended[0].segment_ids == (1,)
    assert np.array_equal(ended[0].audio, first) and not _said(out, TurnDropped)


async def test_the_words_of_a_pause_set_how_long_the_vad_waits() -> None:
    stage, _ctx = await _controller()
    vad = stage.vad_config
    t = now()
    await _feed(stage, [VoiceStarted(onset=t, segment_id=1)])
    hints = []
    for pause_id, text in enumerate(["今日はちょっと疲れちゃった。", "仕事が終わったんだけど", "", "Could you help me?"],
                                    start=1):
        paused = await _feed(stage, [VoicePaused(onset=t, pause_start=t + 1, audio=_audio(1), segment_id=1,
                                                 pause_id=pause_id)])
        assert [type(e) for e in paused] == [UserSpeechPaused] and paused[0].pause_id == pause_id
        hints += await _feed(stage, [SegmentTranscript(segment_id=1, text=text, language="ja", pause_id=pause_id,
                                                       is_speech=bool(text))])
    assert [(h.pause_id, h.hangover_ms, h.reason) for h in hints] == [
        (1, vad.complete_hangover_ms, "complete"), (2, vad.unfinished_hangover_ms, "unfinished"),
        (3, vad.hangover_ms, "unclear"), (4, vad.complete_hangover_ms, "complete")]
