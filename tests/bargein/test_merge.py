"""A pause inside one turn: the user says a sentence, pauses 600 ms (longer than the VAD hangover), goes on.
The reply to the first half is cancelled before it is audible, the parts merge, and the assistant answers
once, to the whole utterance (real Whisper tiny.en on real speech). With a 1 s pause the first half's LLM
request is usually in flight when the user resumes: it is closed unanswered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from assistant.config.loader import Settings
from assistant.events import (
    Interrupted,
    PlaybackStarted,
    TurnDone,
    UserSpeechEnded,
    UserSpeechStarted,
    UserTranscript,
)
from tests.fixtures.llm import ChatPeer
from tests.fixtures.speech import Clip, speech_span, wer

FIRST = "I went to the market this morning."
SECOND = "And I bought some fresh apples for a pie."
REPLY = "Apple pie sounds lovely. Did you find good apples?"


@pytest.mark.parametrize("pause_s", [0.6, 1.0])
async def test_a_pause_longer_than_the_hangover_does_not_split_the_turn(
        pause_s: float, bargein_settings: Callable[..., Settings], chat_peer: ChatPeer, talk: Callable,
        clips: Callable[[str], Clip]) -> None:
    first, second = clips(FIRST), clips(SECOND)
    settings = bargein_settings()
    assert settings.assistant.vad.hangover_ms < 1000 * pause_s
    # The pause is silence between the end of the first sentence's speech and the start of the second's.
    utterance = np.concatenate([first.samples[: int(speech_span(first.samples)[1] * 16000)],
                                np.zeros(int(pause_s * 16000), dtype=np.float32),
                                second.samples[int(speech_span(second.samples)[0] * 16000):],
                                np.zeros(16000, dtype=np.float32)])
    chat_peer.replies = [REPLY]
    chat_peer.first_token_delay = 1.0  # a model that takes its time: no reply can be audible within the pause
    async with talk(settings) as t:
        await t.conversation.warm_up()  # as `saijin demo` does: the engine's client is ready
        chat_peer.requests.clear()
        spoken = t.microphone.say(utterance)
        await spoken.done
        done = await t.record.wait_for(TurnDone, timeout=60)
        await asyncio.sleep(1.5)  # nothing else is answered afterwards
        record, blocks = t.record, list(t.sink.blocks)

    # The first half's turn ended before its reply was heard; the merged turn was answered, once.
    turns = [e.turn_id for e in record.of(UserSpeechStarted)]
    ended = [e.turn_id for e in record.of(UserSpeechEnded)]
    print(f"\nmerge: turns opened {turns}, ended {ended}, transcripts "
          f"{[(e.turn_id, e.text) for e in record.of(UserTranscript)]}; {len(chat_peer.requests)} LLM requests")
    assert len(turns) == 2 and len(ended) == 2, "the pause did not end the first part (nothing to merge)"
    assert [e.turn_id for e in record.of(TurnDone)] == [done.turn_id] == [turns[-1]]
    assert [e.turn_id for e in record.of(Interrupted)] == [turns[0]]
    assert {e.turn_id for e in record.of(PlaybackStarted)} == {done.turn_id}
    assert {b.turn_id for b in blocks} == {done.turn_id}
    assert done.spoken_text == REPLY

    # The answered turn heard the whole utterance: words of both parts.
    heard = [e for e in record.of(UserTranscript) if e.turn_id == done.turn_id]
    assert len(heard) == 1
    text = heard[0].text.lower()
    assert "market" in text and "apples" in text, text
    assert wer(f"{FIRST} {SECOND}", text) <= 0.35, text
    # Only the merged turn's request got its answer; any request for the first half was closed unanswered.
    last = chat_peer.requests[-1] if chat_peer.requests else None
    assert last is not None and last.is_finished and heard[0].text.strip() in last.user_text
    assert all(r.is_abandoned for r in chat_peer.requests[:-1])
