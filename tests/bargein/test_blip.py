"""A backchannel-length sound (150 ms of real speech) during a spoken reply holds the output for a moment but
does not interrupt: the turn completes and every sentence of the reply reaches the WAV file, sample for sample."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Callable

import numpy as np

from assistant.config.loader import Settings
from assistant.events import (
    Audio,
    Interrupted,
    OutputHold,
    OutputResume,
    PlaybackFinished,
    PlaybackStarted,
    TextInput,
    TurnDone,
    UserSpeechStarted,
    UserTranscript,
    VoiceDropped,
    VoiceStarted,
)
from tests.fixtures.llm import ChatPeer
from tests.fixtures.speech import Clip, speech_span

REPLY = ("The weather will be mild and sunny for most of the day. "
         "Later in the evening a light breeze comes in from the sea. "
         "Take a thin jacket if you go for a walk.")
BLIP_S = 0.150


def blip(clip: Clip) -> np.ndarray:
    """150 ms cut from the loudest part of real speech, with 5 ms fades so the cut makes no click."""
    samples, rate = clip.samples, 16000
    start, end = speech_span(samples)
    hop = rate // 100
    loud = [float(np.sqrt(np.mean(samples[i:i + int(BLIP_S * rate)] ** 2)))
            for i in range(int(start * rate), int(end * rate) - int(BLIP_S * rate), hop)]
    first = int(start * rate) + hop * int(np.argmax(loud))
    piece = samples[first:first + int(BLIP_S * rate)].copy()
    fade = np.sin(np.linspace(0, np.pi / 2, rate * 5 // 1000, dtype=np.float32)) ** 2
    piece[: len(fade)] *= fade
    piece[-len(fade):] *= fade[::-1]
    return piece


async def test_a_150_ms_blip_does_not_interrupt_and_every_sentence_plays(
        bargein_settings: Callable[..., Settings], chat_peer: ChatPeer, talk: Callable,
        clips: Callable[[str], Clip]) -> None:
    sound = blip(clips("Yes, I see what you mean."))
    silence = np.zeros(16000, dtype=np.float32)  # the blip, then a second of quiet
    chat_peer.replies = [REPLY]
    async with talk(bargein_settings()) as t:
        t.conversation.emit(TextInput(text="What will the weather be like?"))
        turn = (await t.record.wait_for(UserTranscript)).turn_id
        await t.record.wait_for(PlaybackStarted, lambda e: e.turn_id == turn, timeout=60)
        await asyncio.sleep(1.0)  # well inside the first sentence
        spoken = t.microphone.say(np.concatenate([sound, silence]))
        onset = await spoken.onset
        result = await t.conversation.wait_turn(turn, timeout=60)
        record, sink, output = t.record, t.sink, t.output
        blocks = list(sink.blocks)

    # The blip was heard as voice: the output held, then resumed when it was dropped as too short.
    assert [type(e) for e in record.events if isinstance(e, VoiceStarted | VoiceDropped | OutputHold | OutputResume)] \
        == [VoiceStarted, OutputHold, VoiceDropped, OutputResume]
    assert not record.of(UserSpeechStarted) and len(record.of(UserTranscript)) == 1
    ends = [b.played_at + b.duration_s for b in blocks]
    gaps = [(after.played_at - end, end) for end, after in zip(ends, blocks[1:], strict=False)]
    pause, paused_at = max(gaps)
    print(f"\nblip: output paused {1000 * pause:.0f} ms from {1000 * (paused_at - onset):.0f} ms after the onset")
    assert pause > 0.2 and onset < paused_at <= onset + 0.1  # the hold is audible as a pause ...

    # ... but the turn completed and nothing was lost.
    assert not result.is_interrupted and not record.of(Interrupted)
    assert len(record.of(TurnDone, turn)) == 1
    audio = sorted(record.of(Audio, turn), key=lambda a: a.sentence_index)
    # Every spoken chunk (three sentences; the first may be spoken from a short first clause) played.
    chunks = len(result.sentences)
    assert chunks in (3, 4) and [a.sentence_index for a in audio] == list(range(chunks)) and result.reply == REPLY
    finished = {e.sentence_index: e for e in record.of(PlaybackFinished, turn)}
    for a in audio:
        assert finished[a.sentence_index].played_s == finished[a.sentence_index].duration_s == a.duration_s
        played = sum(b.duration_s for b in blocks if b.sentence_index == a.sentence_index and b.turn_id == turn)
        assert abs(played - a.duration_s) < 1e-6
    with wave.open(str(output), "rb") as wav:
        assert wav.getframerate() == audio[0].sample_rate
        written = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    expected = (np.clip(np.concatenate([a.samples for a in audio]), -1.0, 1.0) * 32767.0).astype("<i2")
    assert np.array_equal(written, expected)
