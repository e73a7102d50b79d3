"""The echo canceller itself (livekit's WebRTC audio processing): fed with what the speaker played, it removes
that sound's delayed, quieter copy from the microphone and keeps what else the microphone hears."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.audio.echo import EchoCanceller, echo_cancellation_available
from tests.reliability.conftest import RATE, english_speech

pytestmark = pytest.mark.skipif(not echo_cancellation_available(), reason="the 'livekit' package is not installed")


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def test_the_speakers_echo_goes_and_the_users_voice_stays() -> None:
    reply = english_speech("The weather is sunny and warm today, and tomorrow it will rain.")
    user = english_speech("Stop please.")
    played_rate = 44100  # the speaker's own rate: the canceller brings it to 16 kHz itself
    from assistant.audio.resample import resample

    played = resample(reply, RATE, played_rate)
    delay = int(0.08 * RATE)
    echo = np.concatenate([np.zeros(delay, np.float32), 0.3 * reply])[: len(reply)]
    user_at = len(reply) // 2
    mic = echo.copy()
    mic[user_at:user_at + len(user)] += 0.5 * user[: len(mic) - user_at]
    canceller = EchoCanceller()
    canceller.set_delay(80)
    out = []
    for begin in range(0, len(reply), RATE // 50):  # 20 ms at a time, the speaker's block first
        far = played[begin * played_rate // RATE:(begin + RATE // 50) * played_rate // RATE]
        canceller.played(far, played_rate)
        out.append(canceller.clean(mic[begin:begin + RATE // 50]))
    cleaned = np.concatenate(out)
    settled = slice(RATE, user_at)  # after the first second (the canceller converges), before the user
    assert _rms(cleaned[settled]) < 0.1 * _rms(mic[settled]), (_rms(cleaned[settled]), _rms(mic[settled]))
    spoken = slice(user_at, user_at + len(user))
    assert _rms(cleaned[spoken]) > 0.3 * _rms(0.5 * user), (_rms(cleaned[spoken]), _rms(0.5 * user))
    assert canceller.far_frames >= len(reply) // 160 - 2 and canceller.held_s < 0.01
