"""Mouth values: 0..1 per 20 ms, closed in silence, open in speech, smoothed."""

from __future__ import annotations

import numpy as np

from assistant.audio.lipsync import level, mouth_values
from assistant.config.schema import VoiceConfig
from assistant.tts.synthesizer import Style, make_synthesizer


def test_mouth_values_follow_real_speech_and_silence(joe_voice_cfg: VoiceConfig) -> None:
    speech, rate = make_synthesizer(joe_voice_cfg).synthesize("I am very happy to see you again.", Style())
    silence = np.zeros(rate, dtype=np.float32)
    audio = np.concatenate([silence, speech, silence])
    mouth = np.array(mouth_values(audio, rate))
    window = int(rate * 0.02)
    assert len(mouth) == -(-len(audio) // window)  # one value per 20 ms
    assert mouth.min() >= 0.0 and mouth.max() <= 1.0
    in_silence = mouth[: 50]
    in_speech = mouth[55: len(mouth) - 55]
    assert in_silence.max() < 0.01
    assert in_speech.mean() > 0.35
    assert mouth[-5:].max() < 0.05  # closed again after the speech


def test_a_quiet_voice_still_moves_the_mouth_but_hiss_does_not() -> None:
    rate = 16000
    t = np.arange(rate) / rate
    quiet_tone = (0.05 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    assert np.mean(mouth_values(quiet_tone, rate)[5:]) > 0.8
    hiss = (np.random.default_rng(0).standard_normal(rate) * 0.0003).astype(np.float32)
    assert max(mouth_values(hiss, rate)) < 0.05


def test_mouth_opens_fast_and_closes_slowly() -> None:
    rate = 16000
    burst = np.zeros(rate, dtype=np.float32)
    burst[: rate // 2] = 0.3 * np.sin(2 * np.pi * 200 * np.arange(rate // 2) / rate)
    mouth = mouth_values(burst, rate)
    after = mouth[25:]  # the burst ends at window 25
    assert mouth[1] > 0.8  # open within two windows
    assert 0.05 < after[1] < after[0]  # then it closes over a few windows, not at once
    assert after[15] < 0.01  # closed within about 300 ms


def test_level_ignores_pauses() -> None:
    rate = 16000
    tone = (0.2 * np.sin(2 * np.pi * 300 * np.arange(rate) / rate)).astype(np.float32)
    padded = np.concatenate([tone, np.zeros(rate, dtype=np.float32)])
    assert abs(level(padded, rate) - level(tone, rate)) < 0.01
    assert abs(level(tone, rate) - 0.2 / np.sqrt(2)) < 0.01
    assert level(np.zeros(100, dtype=np.float32), rate) == 0.0
