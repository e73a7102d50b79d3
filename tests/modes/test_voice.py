"""The bedtime voice, measured on real audio (Piper joe): slower and quieter; and the fade-out at sleep."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.audio.fade import fade_envelope, fade_out
from assistant.config.schema import PersonaConfig, TtsConfig
from assistant.events import Audio, Mode, Subtitle
from assistant.stage import run_stage
from assistant.tts.speech_stage import SpeechStage
from tests.fixtures.speech import speech_span

TEXT = "It was a long day. Close your eyes and rest now."


@pytest.fixture(scope="module")
def steady_persona(night_persona: PersonaConfig) -> PersonaConfig:
    """The joe persona without Piper's random noise, so two renderings of a text differ only by the style."""
    voice = night_persona.voice.model_copy(update={"noise_scale": 0.0, "noise_w": 0.0})
    return night_persona.model_copy(update={"voice": voice})


async def speak(persona: PersonaConfig, subtitle: Subtitle, is_bedtime: bool) -> Audio:
    stage = SpeechStage({persona.id: persona}, TtsConfig(sentence_pause_ms=120), preload=False)
    events = [Mode(value="bedtime" if is_bedtime else "normal"), subtitle]
    audio = [e for e in await run_stage(stage, events) if isinstance(e, Audio)]
    assert len(audio) == 1
    return audio[0]


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0


def windows(samples: np.ndarray, rate: int, seconds: float = 0.1) -> np.ndarray:
    """RMS of each whole ``seconds`` window."""
    size = int(rate * seconds)
    count = len(samples) // size
    frames = samples[: count * size].reshape(count, size).astype(np.float64)
    return np.sqrt(np.mean(frames ** 2, axis=1))


async def test_the_same_text_is_slower_and_quieter_at_bedtime(steady_persona: PersonaConfig) -> None:
    line = Subtitle(turn_id=1, persona=steady_persona.id, sentence_index=0, text=TEXT, language="en")
    day = await speak(steady_persona, line, is_bedtime=False)
    night = await speak(steady_persona, line, is_bedtime=True)
    style = steady_persona.voice.bedtime
    assert style.length_scale and style.volume and style.sentence_pause_ms  # the defaults every voice gets

    day_start, day_end = speech_span(day.samples, day.sample_rate)
    night_start, night_end = speech_span(night.samples, night.sample_rate)
    day_speech = day.samples[int(day_start * day.sample_rate):int(day_end * day.sample_rate)]
    night_speech = night.samples[int(night_start * night.sample_rate):int(night_end * night.sample_rate)]
    # Slower: the spoken part stretches with length_scale (1.3 by default), and the pause after it is longer.
    assert (night_end - night_start) > 1.15 * (day_end - day_start)  # 1.22 here with joe
    assert night.duration_s - night_end > day.duration_s - day_end + 0.4
    # Quieter: the loudness follows volume (0.55 by default).
    ratio = rms(night_speech) / rms(day_speech)
    assert 0.45 < ratio < 0.65, ratio
    assert np.abs(night.samples).max() < 0.7 * np.abs(day.samples).max()


def test_the_fade_envelope_falls_monotonically_to_silence() -> None:
    for count in (1, 2, 7, 48_000):
        envelope = fade_envelope(count)
        assert len(envelope) == count and envelope[-1] == 0.0
        assert np.all(np.diff(envelope) <= 0)  # never rises (float32 may hold a value for a few samples)
        assert envelope.min() >= 0.0 and envelope.max() <= 1.0
    assert np.all(np.diff(fade_envelope(100)) < 0)
    assert fade_envelope(48_000)[0] > 0.999  # no step where the fade begins
    steady = np.full(24_000, 0.5, dtype=np.float32)
    faded = fade_out(steady, 8000, 1.0)
    assert np.array_equal(faded[:16_000], steady[:16_000])
    assert np.all(np.diff(faded[16_000:]) <= 0) and faded[-1] == 0.0
    assert np.array_equal(fade_out(steady, 8000, 10.0), 0.5 * fade_envelope(24_000))  # shorter than the fade
    pcm = (steady * 32767).astype(np.int16)
    assert fade_out(pcm, 8000, 1.0).dtype == np.int16 and fade_out(pcm, 8000, 1.0)[-1] == 0
    assert np.array_equal(fade_out(steady, 8000, 0.0), steady)


async def test_real_speech_fades_out_smoothly(steady_persona: PersonaConfig) -> None:
    line = Subtitle(turn_id=1, persona=steady_persona.id, sentence_index=0, text="Good night. Sweet dreams, sleep well.",
                    language="en")
    audio = await speak(steady_persona, line, is_bedtime=True)
    rate = audio.sample_rate
    _start, end = speech_span(audio.samples, rate)
    speech = audio.samples[: int(end * rate)]
    seconds = 1.5
    faded = fade_out(speech, rate, seconds)
    head = len(speech) - int(seconds * rate)
    assert np.array_equal(faded[:head], speech[:head])
    before, after = windows(speech[head:], rate), windows(faded[head:], rate)
    voiced = before > 1e-3
    gain = after[voiced] / before[voiced]
    assert len(gain) >= 8
    assert np.all(np.diff(gain) <= 1e-6), gain         # the level falls window by window, never rises
    assert np.all(after <= before + 1e-9)
    assert gain[0] > 0.9 and gain[-1] < 0.05
    assert rms(faded[-int(0.05 * rate):]) < 0.01 * windows(speech, rate).max()  # ends near silence


async def test_the_speech_stage_fades_the_last_good_night_line(steady_persona: PersonaConfig) -> None:
    """A Subtitle with fade_out_s comes out of the speech stage faded (before its pause), the same text without
    it does not."""
    plain = Subtitle(turn_id=1, persona=steady_persona.id, sentence_index=0, text="Good night. Sweet dreams.",
                     language="en", is_scripted=True)
    last = Subtitle(turn_id=2, persona=steady_persona.id, sentence_index=0, text=plain.text, language="en",
                    is_scripted=True, fade_out_s=1.0)
    normal, faded = await speak(steady_persona, plain, True), await speak(steady_persona, last, True)
    rate = normal.sample_rate
    assert len(normal.samples) == len(faded.samples)
    pause = steady_persona.voice.bedtime.sentence_pause_ms
    assert pause
    spoken_end = len(normal.samples) - int(rate * pause / 1000)  # the fade ends where the speech does, not the pause
    fade_start = spoken_end - int(1.0 * rate)
    assert np.allclose(faded.samples[:fade_start], normal.samples[:fade_start], atol=1e-6)
    before = windows(normal.samples[fade_start:spoken_end], rate)
    after = windows(faded.samples[fade_start:spoken_end], rate)
    gain = after[before > 1e-4] / before[before > 1e-4]
    assert len(gain) >= 5 and np.all(np.diff(gain) <= 1e-6), gain
    tail = slice(spoken_end - int(0.15 * rate), spoken_end)
    assert rms(faded.samples[tail]) < 0.1 * rms(normal.samples[tail])
