"""The echo gate: a loudspeaker without echo cancellation feeds the assistant's own voice back into the
microphone. With the gate (mute, or raise) the assistant does not take itself for the user; without it, it
does — it stutters (a speaker whose echo stops when the output holds) or cuts itself off (a speaker with a
deep buffer whose echo goes on after a hold)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from assistant.config.loader import Settings
from assistant.events import (
    Interrupted,
    OutputHold,
    PlaybackStarted,
    TextInput,
    TurnDone,
    UserTranscript,
    VoiceStarted,
)
from tests.bargein.conftest import EchoPath
from tests.fixtures.llm import ChatPeer

REPLY = ("The weather will be mild and sunny for most of the day. "
         "Later in the evening a light breeze comes in from the sea. "
         "Take a thin jacket if you go for a walk.")
#: The speaker heard by the microphone: about 10 dB under the voice itself (Piper peaks near full scale).
ECHO_GAIN = 0.3


@pytest.mark.parametrize("model", ["played", "sent"])
@pytest.mark.parametrize("gate", ["mute", "raise"])
async def test_with_the_echo_gate_the_assistant_does_not_hear_itself(
        gate: str, model: str, bargein_settings: Callable[..., Settings], chat_peer: ChatPeer, talk: Callable) -> None:
    chat_peer.replies = [REPLY]
    async with talk(bargein_settings(echo_gate=gate)) as t:
        echo = t.microphone.echo_path = EchoPath(t.conversation.bus, t.sink, ECHO_GAIN, model)
        t.conversation.emit(TextInput(text="What will the weather be like?"))
        turn = (await t.record.wait_for(UserTranscript)).turn_id
        result = await t.conversation.wait_turn(turn, timeout=90)
        await asyncio.sleep(0.5)  # the echo's tail, too, is heard
        record = t.record

    played = sum(b.duration_s for b in t.sink.blocks if b.turn_id == turn)
    print(f"\necho gate {gate} ({model}): {echo.echoed_s:.2f} s of the reply fed back to the microphone")
    # Every spoken chunk played (three sentences; the first may be spoken from a short first clause).
    chunks = len(result.sentences)
    assert chunks in (3, 4) and {e.sentence_index for e in record.of(PlaybackStarted, turn)} == set(range(chunks))
    assert echo.echoed_s == pytest.approx(played, abs=0.01) and played > 5.0
    assert not result.is_interrupted and not record.of(Interrupted)
    assert len(record.of(TurnDone, turn)) == 1 and result.reply == REPLY
    assert not record.of(VoiceStarted) and not record.of(OutputHold)  # it never took itself for the user
    assert len(record.of(UserTranscript)) == 1


async def test_without_the_gate_a_speaker_echo_makes_the_assistant_stutter(
        bargein_settings: Callable[..., Settings], chat_peer: ChatPeer, talk: Callable) -> None:
    """Control: the echo that stops when the output holds is taken for the user again and again."""
    chat_peer.replies = [REPLY]
    async with talk(bargein_settings(echo_gate="off")) as t:
        t.microphone.echo_path = EchoPath(t.conversation.bus, t.sink, ECHO_GAIN, "played")
        t.conversation.emit(TextInput(text="What will the weather be like?"))
        turn = (await t.record.wait_for(UserTranscript)).turn_id
        started = await t.record.wait_for(PlaybackStarted, lambda e: e.turn_id == turn, timeout=60)
        await asyncio.sleep(4.0)
        played = t.sink.position_s
        record = t.record

    holds = record.of(OutputHold)
    print(f"\nno echo gate (played): {len(holds)} holds; {played:.2f} s of the reply played in 4 s")
    assert record.of(VoiceStarted) and len(holds) >= 3
    assert played < 2.0 and not record.of(TurnDone, turn)
    assert started.sentence_index == 0


async def test_without_the_gate_a_buffered_speaker_echo_interrupts_the_assistant(
        bargein_settings: Callable[..., Settings], chat_peer: ChatPeer, talk: Callable) -> None:
    """Control: the echo that goes on after a hold is taken for the user barging in."""
    chat_peer.replies = [REPLY]
    async with talk(bargein_settings(echo_gate="off")) as t:
        t.microphone.echo_path = EchoPath(t.conversation.bus, t.sink, ECHO_GAIN, "sent")
        t.conversation.emit(TextInput(text="What will the weather be like?"))
        turn = (await t.record.wait_for(UserTranscript)).turn_id
        await t.record.wait_for(PlaybackStarted, lambda e: e.turn_id == turn, timeout=60)
        await t.record.wait_for(Interrupted, lambda e: e.turn_id == turn, timeout=15)
        record = t.record

    assert record.of(VoiceStarted) and record.of(OutputHold)
    assert not record.of(TurnDone, turn)
