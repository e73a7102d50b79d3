"""OutputStage through the real Pipeline with realtime sinks: order, hold/resume, interruption, measured
on the sink's own sample clock."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from assistant.audio.output_stage import OutputStage
from assistant.audio.sinks import NullSink, WavFileSink
from assistant.config.schema import VoiceConfig
from assistant.events import (
    Audio,
    Event,
    Interrupted,
    OutputHold,
    OutputResume,
    PlaybackFinished,
    PlaybackStarted,
    now,
)
from assistant.pipeline.runtime import Pipeline
from assistant.tts.synthesizer import Style, make_synthesizer


@pytest.fixture(scope="module")
def long_reply(joe_voice_cfg: VoiceConfig) -> tuple[np.ndarray, int]:
    """About three seconds of real speech."""
    return make_synthesizer(joe_voice_cfg).synthesize(
        "This is a long answer that keeps going for a while, so that there is time to interrupt it.", Style())


def _audio(turn: int, index: int, speech: tuple[np.ndarray, int]) -> Audio:
    samples, rate = speech
    return Audio(turn_id=turn, sentence_index=index, sample_rate=rate, samples=samples)


async def test_sentences_play_in_order_with_start_and_finish_events(long_reply: tuple[np.ndarray, int]) -> None:
    samples, rate = long_reply
    short = (samples[: rate // 2], rate)
    sink = NullSink(realtime=False)
    seen: list[Event] = []
    async with Pipeline([OutputStage(sink)]) as pipeline:
        pipeline.bus.subscribe(seen.append)
        for i in range(3):
            pipeline.emit(_audio(1, i, short))
        await pipeline.wait_idle()
    started = [e for e in seen if isinstance(e, PlaybackStarted)]
    finished = [e for e in seen if isinstance(e, PlaybackFinished)]
    assert [e.sentence_index for e in started] == [0, 1, 2] == [e.sentence_index for e in finished]
    assert all(abs(e.played_s - 0.5) < 1e-6 and abs(e.duration_s - 0.5) < 1e-6 for e in finished)
    assert all(0.05 < e.level < 1 for e in started)
    assert [b.sentence_index for b in sink.blocks] == sorted(b.sentence_index for b in sink.blocks)
    assert max(b.duration_s for b in sink.blocks) <= 0.02 + 1e-9
    assert sink.position_s == pytest.approx(1.5)


async def test_hold_stops_within_100ms_and_resume_continues_where_it_paused(
        tmp_path: Path, long_reply: tuple[np.ndarray, int]) -> None:
    samples, rate = long_reply
    path = tmp_path / "reply.wav"
    sink = WavFileSink(path, realtime=True)
    async with Pipeline([OutputStage(sink)]) as pipeline:
        pipeline.emit(_audio(1, 0, long_reply))
        await asyncio.sleep(0.5)
        hold_at = now()
        pipeline.emit(OutputHold(at=hold_at))
        await asyncio.sleep(0.3)
        held_position = sink.position_s
        playing_at_hold = sink.position_at(hold_at)
        assert playing_at_hold > 0.3
        assert held_position - playing_at_hold <= 0.1  # measured on the sink's clock
        await asyncio.sleep(0.2)
        assert sink.position_s == held_position  # silent while held
        pipeline.emit(OutputResume())
        await pipeline.wait_idle()
    assert sink.position_s == pytest.approx(len(samples) / rate)
    with wave.open(str(path), "rb") as played:
        assert played.getframerate() == rate
        pcm = np.frombuffer(played.readframes(played.getnframes()), dtype="<i2")
    expected = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    assert np.array_equal(pcm, expected)  # nothing lost, nothing repeated


async def test_interruption_stops_the_turn_within_100ms_and_nothing_of_it_plays_after(
        long_reply: tuple[np.ndarray, int]) -> None:
    samples, rate = long_reply
    sink = NullSink(realtime=True)
    seen: list[Event] = []
    async with Pipeline([OutputStage(sink)]) as pipeline:
        pipeline.bus.subscribe(seen.append)
        pipeline.emit(_audio(1, 0, long_reply))
        pipeline.emit(_audio(1, 1, long_reply))  # queued behind the first
        await asyncio.sleep(0.5)
        pipeline.emit(OutputHold(at=now()))  # the barge-in first holds the output...
        await asyncio.sleep(0.05)
        cancelled_at = now()
        pipeline.cancel_turn(1, "barge-in")  # ...then the speech lasts long enough: the turn is cancelled
        await asyncio.sleep(0.3)
        pipeline.emit(_audio(2, 0, (samples[: rate // 2], rate)))
        await pipeline.wait_idle()
    turn1 = [b for b in sink.blocks if b.turn_id == 1]
    turn2 = [b for b in sink.blocks if b.turn_id == 2]
    assert {b.sentence_index for b in turn1} == {0}  # the queued sentence never played
    assert max(b.end_s for b in turn1) - sink.position_at(cancelled_at) <= 0.1
    assert max(b.end_s for b in turn1) <= min(b.start_s for b in turn2)
    assert sum(b.duration_s for b in turn2) == pytest.approx(0.5)  # the next turn plays normally
    assert any(isinstance(e, Interrupted) and e.turn_id == 1 for e in seen)
    assert [(e.turn_id, e.sentence_index) for e in seen if isinstance(e, PlaybackStarted)] == [(1, 0), (2, 0)]


async def test_interrupted_while_playing_reports_what_was_played(long_reply: tuple[np.ndarray, int]) -> None:
    sink = NullSink(realtime=True)
    seen: list[Event] = []
    async with Pipeline([OutputStage(sink)]) as pipeline:
        pipeline.bus.subscribe(seen.append)
        pipeline.emit(_audio(4, 0, long_reply))
        await asyncio.sleep(0.4)
        stopped_at = now()
        pipeline.emit(Interrupted(turn_id=4))
        await pipeline.wait_idle()
    finished = [e for e in seen if isinstance(e, PlaybackFinished)]
    assert len(finished) == 1
    assert abs(finished[0].played_s - sink.position_at(stopped_at)) <= 0.1
    assert sink.position_s - sink.position_at(stopped_at) <= 0.1
