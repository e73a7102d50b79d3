"""Barge-in through the real assembled pipeline: real user speech over a long spoken reply stops the output
within 100 ms of its onset (on the sink's clock), the cancelled turn never plays again, the barging speech
is answered as the next turn, and memory keeps only what was heard, marked interrupted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from assistant.config.loader import Settings
from assistant.events import (
    Audio,
    Interrupted,
    PlaybackStarted,
    Subtitle,
    TextInput,
    TurnDone,
    UserTranscript,
)
from assistant.memory.store import MemoryStore
from tests.fixtures.llm import ChatPeer
from tests.fixtures.speech import Clip, wer

#: Six sentences, about 25 s of speech: the user cuts in during the second or third.
LONG_REPLY = ("Once upon a time, a small fox lived at the edge of a quiet forest. "
              "Every morning she walked down to the river to watch the silver fish. "
              "One day she found a shiny stone that glowed softly under the water. "
              "She carried it home and showed it to her old friend the owl. "
              "The owl said that the stone was a gift from the moon itself. "
              "From then on, the fox kept it safe beside her bed every night.")
SHORT_REPLY = "All right, I will stop there. What is your question?"
BARGE = "Wait a moment, I have a question about the weather."


def _spoken(sentences: list[str], fractions: list[float]) -> str:
    """What the reply stage should remember: whole sentences heard, then the heard part of a cut one with …"""
    spoken: list[str] = []
    for sentence, fraction in zip(sentences, fractions, strict=False):
        if fraction >= 0.999:
            spoken.append(sentence)
        elif fraction > 0:
            spoken.append(sentence[: max(1, int(len(sentence) * fraction))] + "…")
            break
        else:
            break
    return " ".join(spoken)


async def test_user_speech_stops_a_long_reply_within_100_ms_and_becomes_the_next_turn(
        bargein_settings: Callable[..., Settings], chat_peer: ChatPeer, talk: Callable,
        clips: Callable[[str], Clip]) -> None:
    barge = clips(BARGE)
    assert barge.duration >= 1.0
    settings = bargein_settings(echo_gate="off")
    chat_peer.replies = [LONG_REPLY, SHORT_REPLY]
    chat_peer.interval = 0.12  # the model is still streaming when the user cuts in
    async with talk(settings, use_memory=True) as t:
        t.conversation.emit(TextInput(text="Tell me a story about a fox."))
        first = (await t.record.wait_for(UserTranscript)).turn_id
        await t.record.wait_for(PlaybackStarted, lambda e: e.turn_id == first and e.sentence_index == 1, timeout=60)
        await asyncio.sleep(0.7)  # into the second sentence
        spoken = t.microphone.say(barge.samples)
        onset = await spoken.onset
        await t.record.wait_for(Interrupted, lambda e: e.turn_id == first, timeout=10)
        heard = await t.record.wait_for(UserTranscript, lambda e: e.turn_id > first, timeout=30)
        second = heard.turn_id
        result = await t.conversation.wait_turn(second, timeout=60)
        await asyncio.sleep(0.3)
        blocks = list(t.sink.blocks)
        record = t.record

    # Output of the cut turn stopped within 100 ms of the speech onset, on the sink's clock.
    cut = [b for b in blocks if b.turn_id == first]
    last = max(cut, key=lambda b: b.played_at)
    stopped_at = last.played_at + last.duration_s
    print(f"\nbarge-in: onset -> output stopped {1000 * (stopped_at - onset):.1f} ms")
    assert stopped_at > onset - 0.02, "the reply was not playing when the user spoke"
    assert stopped_at - onset <= 0.100, f"output stopped {1000 * (stopped_at - onset):.0f} ms after the onset"
    # Nothing of the cancelled turn played afterwards: every later block belongs to the new turn.
    position = blocks.index(last)
    assert all(b.turn_id == second for b in blocks[position + 1:])
    assert any(b.turn_id == second for b in blocks[position + 1:])
    assert not record.of(TurnDone, first)
    assert len(record.of(Interrupted, first)) == 1
    # The model's stream was closed mid-reply.
    assert chat_peer.requests[0].is_abandoned and not chat_peer.requests[0].is_finished

    # The barging speech became the next turn, and it was answered in full.
    assert wer(BARGE, heard.text) <= 0.35, heard.text
    assert not result.is_interrupted and result.reply == SHORT_REPLY
    assert len(chat_peer.requests) == 2 and heard.text.strip() in chat_peer.requests[1].user_text
    assert record.of(TurnDone, second)

    # Memory: the cut reply keeps only what was heard, marked interrupted.
    sentences = [s.text for s in record.of(Subtitle, first)]
    audio = {a.sentence_index: a for a in record.of(Audio, first)}
    fractions = [sum(b.duration_s for b in cut if b.sentence_index == i) / audio[i].duration_s if i in audio else 0.0
                 for i in range(len(sentences))]
    print(f"heard fractions of the cut reply: {[round(f, 3) for f in fractions]}")
    assert fractions[0] > 0.999 and 0 < fractions[1] < 0.999 and not any(fractions[2:])  # cut in the second sentence
    expected = _spoken(sentences, fractions)
    with MemoryStore.from_settings(settings) as store:
        turns = store.turns()
    by_turn = {(m.turn_id, m.role): m for m in turns}
    assert len(turns) == 4 and set(by_turn) == {(first, "user"), (first, "assistant"), (second, "user"), (second, "assistant")}
    kept = by_turn[(first, "assistant")]
    assert kept.is_interrupted
    assert len(kept.text) < len(LONG_REPLY)
    print(f"memory kept: {kept.text!r}")
    # The cut sentence's heard part, give or take one character of rounding.
    assert kept.text.endswith("…") and abs(len(kept.text) - len(expected)) <= 1
    assert expected.startswith(kept.text[:-2]), (kept.text, expected)
    assert by_turn[(first, "user")].text == "Tell me a story about a fox."
    assert by_turn[(second, "user")].text == heard.text
    assert by_turn[(second, "assistant")].text == SHORT_REPLY and not by_turn[(second, "assistant")].is_interrupted
