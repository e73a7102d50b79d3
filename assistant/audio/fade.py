"""Fading audio out to silence (the last good-night line of bedtime mode ends this way)."""

from __future__ import annotations

import numpy as np


def fade_envelope(count: int) -> np.ndarray:
    """``count`` gains falling from (just under) 1 to exactly 0 along half a cosine: never rising, smooth at both ends."""
    if count <= 0:
        return np.zeros(0, dtype=np.float32)
    position = np.arange(1, count + 1, dtype=np.float64) / count
    return (0.5 * (1.0 + np.cos(np.pi * position))).astype(np.float32)


def fade_out(samples: np.ndarray, sample_rate: int, seconds: float) -> np.ndarray:
    """A copy of ``samples`` whose last ``seconds`` fall smoothly to silence (all of it when it is shorter).

    Float input stays float32; integer input (int16 PCM) keeps its dtype.
    """
    audio = np.asarray(samples).reshape(-1)
    count = min(len(audio), round(max(seconds, 0.0) * sample_rate))
    if np.issubdtype(audio.dtype, np.integer):
        out = audio.astype(np.float32)
        if count:
            out[-count:] *= fade_envelope(count)
        return np.round(out).astype(audio.dtype)
    out = audio.astype(np.float32, copy=True)
    if count:
        out[-count:] *= fade_envelope(count)
    return out
