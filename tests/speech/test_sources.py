"""Audio sources: WAV files (fast and real time), PCM chunks from the page, and the microphone's error."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from assistant.audio.resample import resample
from assistant.audio.sources import MicSource, PcmFeedSource, WavSource
from assistant.audio.vad import VadStage
from assistant.config.schema import VadConfig
from assistant.errors import BadInputError, SaijinError
from assistant.events import AudioFrame, Event, InputEnded, VoiceEnded, VoiceStarted, now
from assistant.pipeline.bus import Bus
from assistant.pipeline.runtime import Pipeline
from assistant.stage import Stage
from tests.fixtures.speech import SpeechMaker

RATE = 16000


async def collect(stages: list[Stage], feed: object = None) -> list[Event]:
    bus = Bus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    async with Pipeline(stages, bus) as pipeline:
        if callable(feed):
            feed()
        await pipeline.wait_runners()
        await pipeline.wait_idle()
    return seen


async def test_wav_source_fast_gives_every_sample_in_20_ms_frames_then_input_ended(
        speech_maker: SpeechMaker, tmp_path: Path) -> None:
    audio = speech_maker.compose(0.2, speech_maker.english("Hello."), 0.2)
    path = audio.write(tmp_path / "hello44k.wav", rate=44100, channels=2)
    events = await collect([WavSource(path, realtime=False)])
    assert isinstance(events[-1], InputEnded)
    frames = [e for e in events if isinstance(e, AudioFrame)]
    assert all(len(f.samples) == 320 for f in frames[:-1]) and 0 < len(frames[-1].samples) <= 320
    assert all(f.sample_rate == RATE for f in frames)
    joined = np.concatenate([f.samples for f in frames])
    expected = resample(resample(audio.samples, RATE, 44100), 44100, RATE)
    assert abs(len(joined) - len(audio.samples)) <= 1
    assert np.abs(joined[: len(expected)] - expected[: len(joined)]).max() < 2e-3
    stamps = [f.timestamp for f in frames]
    assert stamps == sorted(stamps)


async def test_wav_source_in_real_time_is_paced_by_the_audio_clock(speech_maker: SpeechMaker,
                                                                   tmp_path: Path) -> None:
    path = speech_maker.compose(0.6).write(tmp_path / "short.wav")
    started = now()
    events = await collect([WavSource(path, realtime=True, frame_ms=30)])
    frames = [e for e in events if isinstance(e, AudioFrame)]
    assert len(frames) == 20
    steps = np.diff([f.timestamp for f in frames])
    assert np.allclose(steps, 0.03, atol=1e-6)
    # A frame is emitted no earlier than its last sample is 'heard'.
    assert now() - started >= 0.6 - 1e-3
    assert frames[-1].timestamp >= started + 0.6 - 1e-3


async def test_a_bad_wav_stops_the_source_at_start_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("not audio\n")
    with pytest.raises(BadInputError) as exc:
        await collect([WavSource(path, realtime=False)])
    assert "\n" not in str(exc.value) and "not a WAV file" in str(exc.value) and exc.value.exit_code == 2


async def test_real_time_vad_decides_after_the_hangover(speech_maker: SpeechMaker, tmp_path: Path) -> None:
    audio = speech_maker.compose(0.3, speech_maker.english("Yes, please."), 0.6)
    path = audio.write(tmp_path / "yes.wav")
    events = await collect([WavSource(path, realtime=True), VadStage(VadConfig(hangover_ms=300))])
    started = [e for e in events if isinstance(e, VoiceStarted)]
    ended = [e for e in events if isinstance(e, VoiceEnded)]
    assert len(started) == len(ended) == 1
    first_frame = next(e for e in events if isinstance(e, AudioFrame))
    clock_zero = first_frame.timestamp - len(first_frame.samples) / RATE
    assert ended[0].onset - clock_zero == pytest.approx(audio.spans[0][0], abs=0.06)
    assert ended[0].speech_end - clock_zero == pytest.approx(audio.spans[0][1], abs=0.08)
    # The decision comes once the hangover has been heard, never before.
    assert ended[0].decided_at >= ended[0].speech_end + 0.3 - 1e-3


async def test_pcm_feed_source_resamples_browser_chunks_and_ends(speech_maker: SpeechMaker) -> None:
    speech = speech_maker.compose(0.2, speech_maker.english("Can you hear me?"), 0.3)
    at_48k = resample(speech.samples, RATE, 48000)
    pcm = (np.clip(at_48k, -1, 1) * 32767).astype("<i2")
    source = PcmFeedSource(sample_rate=48000, frame_ms=20)

    def feed() -> None:
        def from_another_thread() -> None:
            for i, start in enumerate(range(0, len(pcm), 2048)):
                chunk = pcm[start:start + 2048]
                source.feed(chunk.tobytes() if i % 2 else chunk)  # bytes and int16 arrays alike
            source.end()

        threading.Thread(target=from_another_thread).start()

    events = await collect([source], feed=feed)
    assert isinstance(events[-1], InputEnded)
    frames = [e for e in events if isinstance(e, AudioFrame)]
    joined = np.concatenate([f.samples for f in frames])
    expected = resample(pcm.astype(np.float32) / 32768.0, 48000, RATE)  # what the whole signal resamples to
    assert len(joined) == len(expected)
    assert np.abs(joined - expected).max() < 1e-4
    assert abs(len(joined) - len(speech.samples)) <= 2
    stamps = [f.timestamp for f in frames]
    assert stamps == sorted(stamps)


async def test_pcm_feed_source_refuses_odd_byte_chunks() -> None:
    source = PcmFeedSource()
    with pytest.raises(BadInputError):
        source.feed(b"\x00\x01\x02")


async def test_microphone_without_a_device_suggests_the_browser() -> None:
    source = MicSource(device=None)
    with pytest.raises(SaijinError) as exc:
        await asyncio.wait_for(collect([source]), timeout=30)
    message = str(exc.value)
    assert "\n" not in message
    assert "--input browser" in message
    assert exc.value.exit_code == 1
