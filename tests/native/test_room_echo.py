"""Loudspeakers without headphones, simulated: the "room" sink's monitor loops back into the "mic feed" (60 ms
later, about 13 dB quieter), so the assistant's own reply reaches its microphone. With the default settings
(echo cancellation: livekit's WebRTC audio processing, fed with what the speaker plays) the reply neither
interrupts itself nor stutters, and the user's voice mixed in halfway still barges in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from assistant.audio.echo import echo_cancellation_available
from assistant.audio.wavfile import read_wav, write_wav
from assistant.config.loader import load_settings
from tests.fixtures.llm import ChatPeer, serving
from tests.fixtures.pulse import PulseServer
from tests.native.conftest import room_loopback, running_saijin, sound_spans, spoken_wav
from tests.reliability.conftest import RATE

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not echo_cancellation_available(),
                                 reason="the 'livekit' package is not installed (pip install 'saijin[echo]')")]

#: A reply long enough to be talked over: about seven seconds of the Piper voice.
LONG_REPLY = ("The weather is sunny and warm today. Tomorrow morning it will rain for a while, "
              "and in the afternoon the wind will come from the west.")
#: Leading silence in the user's interruption WAV.
LEAD_S = 0.2
#: The room: the speaker reaches the microphone this much later.
LOOP_MS = 60


@pytest.fixture
async def long_peer() -> AsyncIterator[ChatPeer]:
    async with serving(ChatPeer(replies=[LONG_REPLY])) as peer:
        yield peer


@pytest.fixture(scope="module")
def interruption_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return spoken_wav(tmp_path_factory.mktemp("room"), "interrupt.wav",
                      "Wait, stop please, I have another question for you.", LEAD_S, 0.5)


def _from_the_beep(samples: np.ndarray) -> np.ndarray:
    """The recording from the beep on (which is silenced): time 0 is when it heard the beep."""
    spans = sound_spans(samples)
    assert spans and spans[0][1] - spans[0][0] < 0.5, f"no beep first in the recording: {spans[:3]}"
    begin = spans[0][0]
    out = samples[int(begin * RATE):].copy()
    out[: RATE // 2] = 0.0
    return out


def _find(haystack: np.ndarray, needle: np.ndarray, after_s: float) -> float:
    """The time in ``haystack`` (from ``after_s`` on) where ``needle`` matches best (the correlation's peak:
    the user's voice is the loudest thing the mic hears, the echo is 13 dB down)."""
    start = max(0, int(after_s * RATE))
    # (Under load the recording may end a little early: zeros stand in for the rest.)
    window = np.concatenate([haystack[start:start + len(needle) + 10 * RATE], np.zeros(len(needle), np.float32)])
    size = 1 << int(np.ceil(np.log2(len(window) + len(needle))))
    corr = np.fft.irfft(np.fft.rfft(window, size) * np.conj(np.fft.rfft(needle, size)), size)[: len(window) - len(needle)]
    return (start + int(np.argmax(corr))) / RATE


def _reply_seconds(events: list[dict], turn: int) -> float:
    """How long the turn's reply audio is (its mouth track has one value per 20 ms)."""
    return sum(len(e.get("mouth", [])) * 0.02 for e in events if e["type"] == "audio" and e["turn_id"] == turn)


async def test_in_a_room_the_reply_neither_hears_itself_nor_stops_the_user_barging_in(
        pulse_server: PulseServer, native_config: Path, long_peer: ChatPeer, question_wav: Path,
        interruption_wav: Path, tmp_path: Path) -> None:
    room_loopback(pulse_server, delay_ms=LOOP_MS)
    recording = pulse_server.record(tmp_path / "room.wav")
    heard = pulse_server.record(tmp_path / "mic.wav", device="micfeed.monitor")
    # A beep into the room puts the two recordings on one clock: the mic hears it LOOP_MS after the room
    # (once the loopback runs: give it time to start).
    await asyncio.sleep(2.0)
    beep = write_wav(tmp_path / "beep.wav", 0.3 * np.sin(2 * np.pi * 1000 * np.arange(RATE // 5) / RATE), RATE)
    beeped_at = time.monotonic()
    assert await asyncio.to_thread(pulse_server.play(beep, device="room").wait) == 0
    async with running_saijin(pulse_server, native_config, long_peer) as saijin:
        # 1. The reply reaches the microphone through the room the whole time it plays.
        assert await asyncio.to_thread(pulse_server.play(question_wav).wait) == 0
        events = await saijin.wait_until_said(1)
        first_done = time.monotonic() - beeped_at
        # 2. The user talks over the second reply, halfway through it.
        await asyncio.sleep(1.0)
        assert await asyncio.to_thread(pulse_server.play(question_wav).wait) == 0
        while sum(e["type"] == "state" and e["value"] == "speaking" for e in saijin.events()) < 2:
            await asyncio.sleep(0.02)
        await asyncio.sleep(2.0)
        talked_at = time.monotonic() - beeped_at
        player = pulse_server.play(interruption_wav)
        deadline = time.monotonic() + 30
        while not any(e["type"] == "interrupted" for e in saijin.events()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(player.wait)
        events = saijin.events()
        stdout = list(saijin.stdout)
    room = _from_the_beep(read_wav(recording.stop(), sample_rate=RATE))
    mic = _from_the_beep(read_wav(heard.stop(), sample_rate=RATE))

    answered = list(dict.fromkeys(e["turn_id"] for e in events if e["type"] == "subtitle"))
    interrupted = {e["turn_id"] for e in events if e["type"] == "interrupted"}
    assert len(answered) >= 2, answered
    one, two = answered[:2]
    assert one not in interrupted, f"the first reply interrupted itself: {[e['type'] for e in events]}"
    # The first reply: as long as its audio and in one stretch a sentence (no holds, no repeats, no
    # self-interruption); hearing itself, it came out chopped into 0.2-0.3 s bursts and stretched.
    first = [span for span in sound_spans(room[: int(first_done * RATE)]) if span[1] - span[0] > 0.1]
    assert first, "the room heard nothing"
    played = first[-1][1] - first[0][0]
    expected = _reply_seconds(events, one)
    sentences = sum(e["type"] == "audio" and e["turn_id"] == one for e in events)
    assert expected > 4.0, expected
    assert len(first) <= sentences + 1 and abs(played - expected) <= 0.1 * expected, (first, expected, sentences)
    # The user's voice stopped the second reply: the sound ends soon after they began to speak.
    assert two in interrupted, f"the user's voice did not barge in: {[e['type'] for e in events][-30:]}"
    # Where the user's words are in what the mic heard (it also heard the reply's echo): the best match of
    # the interruption's own samples, searched from when it was played.
    spoke_at = _find(mic, read_wav(interruption_wav, sample_rate=RATE)[int(LEAD_S * RATE):], talked_at - 0.5)
    spoke_at += LOOP_MS / 1000  # on the room's clock
    # Speech interrupts once it has lasted barge_in.min_speech_ms (a backchannel does not); then the output
    # stops within the speaker's latency (about 0.8 s from the onset in all, idle).
    limit = load_settings(native_config).assistant.barge_in.min_speech_ms / 1000 + 0.8
    # The reply's sound around the onset (the user may begin in a pause between two sentences): whatever
    # played then or began before the limit ended before it. (The next turn's reply begins only after the
    # interruption's several seconds of speech.)
    assert any(first_done < span[0] < spoke_at for span in sound_spans(room)), \
        f"the second reply was not playing when the user spoke at {spoke_at:.2f} s: {sound_spans(room)}"
    around = [span for span in sound_spans(room) if span[1] > spoke_at - 0.3 and span[0] < spoke_at + limit]
    stopped_after = max([span[1] - spoke_at for span in around], default=0.0)
    print(f"room: first reply over {played:.2f} s of {expected:.2f} s in {len(first)} stretch(es); "
          f"output stopped {stopped_after * 1000:.0f} ms after the user's onset; "
          f"{[line.split(': ')[-1] for line in stdout if 'voice to voice' in line]}")
    assert stopped_after < limit, f"the reply went on {stopped_after:.2f} s after the user began to speak"
    assert float(np.abs(room).max()) > 0.05
