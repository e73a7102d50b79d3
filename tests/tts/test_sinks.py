"""Sinks: one WAV file for the whole reply (resampled to one rate), the sample clock, the speaker's errors."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from assistant.audio.sinks import NullSink, SpeakerSink, WavFileSink
from assistant.errors import SaijinError


def _tone(rate: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


async def test_wav_sink_keeps_one_rate_for_voices_of_different_rates(tmp_path: Path) -> None:
    sink = WavFileSink(tmp_path / "out" / "reply.wav")
    await sink.open()
    for rate in (22050, 16000, 24000):
        samples, out_rate = sink.convert(_tone(rate, 0.5), rate)
        assert out_rate == 22050
        for start in range(0, len(samples), 441):
            await sink.write(samples[start:start + 441], out_rate, turn_id=1, sentence_index=0)
    await sink.close()
    with wave.open(str(tmp_path / "out" / "reply.wav"), "rb") as played:
        assert played.getframerate() == 22050 and played.getnchannels() == 1 and played.getsampwidth() == 2
        assert played.getnframes() == pytest.approx(3 * 0.5 * 22050, abs=3)
    assert sink.position_s == pytest.approx(1.5, abs=1e-3)


async def test_an_empty_reply_still_gives_a_valid_wav_file(tmp_path: Path) -> None:
    sink = WavFileSink(tmp_path / "empty.wav")
    await sink.open()
    await sink.close()
    with wave.open(str(tmp_path / "empty.wav"), "rb") as played:
        assert played.getnframes() == 0


async def test_a_realtime_sink_plays_at_the_audio_clock() -> None:
    sink = NullSink(realtime=True)
    block = np.zeros(320, dtype=np.float32)  # 20 ms at 16 kHz
    for _ in range(10):
        await sink.write(block, 16000)
    first, last = sink.blocks[0], sink.blocks[-1]
    assert last.played_at - first.played_at == pytest.approx(0.18, abs=0.03)  # on the clock, no drift
    assert sink.position_at(first.played_at + 0.1) == pytest.approx(0.1, abs=0.021)
    assert sink.position_at(first.played_at - 1) == 0.0


async def test_no_output_device_is_one_clear_line() -> None:
    sink = SpeakerSink(device="no such device 42")
    with pytest.raises(SaijinError) as caught:
        await sink.open()
    message = str(caught.value)
    assert "\n" not in message and "--output" in message
