"""Lip-sync values: how far the mouth opens (0..1) for each 20 ms of speech, from the audio's loudness."""

from __future__ import annotations

import math

import numpy as np

WINDOW_MS = 20
#: Windows this far (dB) below the sentence's loud level close the mouth completely.
DYNAMIC_RANGE_DB = 36.0
#: The loud level never counts as quieter than this RMS, so a silent or near-silent chunk stays closed.
MIN_REFERENCE_RMS = 0.02
#: Below this RMS (about -60 dBFS) a window is silence.
SILENCE_RMS = 0.001


def window_rms(samples: np.ndarray, sample_rate: int, window_ms: int = WINDOW_MS) -> np.ndarray:
    """RMS of each ``window_ms`` window (the last one may be shorter)."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    size = max(1, round(sample_rate * window_ms / 1000))
    count = math.ceil(len(samples) / size)
    if count == 0:
        return np.zeros(0, dtype=np.float32)
    padded = np.zeros(count * size, dtype=np.float32)
    padded[: len(samples)] = samples
    squares = (padded.astype(np.float64) ** 2).reshape(count, size).sum(axis=1)
    lengths = np.full(count, size, dtype=np.float64)
    lengths[-1] = len(samples) - size * (count - 1)
    levels: np.ndarray = np.sqrt(squares / lengths).astype(np.float32)
    return levels


def mouth_values(samples: np.ndarray, sample_rate: int, window_ms: int = WINDOW_MS,
                 attack: float = 0.7, release: float = 0.3) -> tuple[float, ...]:
    """One mouth opening (0..1) per ``window_ms`` of audio, aligned with its first sample.

    Loudness is taken in dB relative to the sentence's loud level (its 95th percentile window), so a quiet
    bedtime voice still moves the mouth; then smoothed: the mouth opens fast (``attack``) and closes
    more slowly (``release``), like a real one.
    """
    rms = window_rms(samples, sample_rate, window_ms)
    if rms.size == 0:
        return ()
    reference = max(float(np.percentile(rms, 95)), MIN_REFERENCE_RMS)
    reference_db = 20.0 * math.log10(reference)
    with np.errstate(divide="ignore"):
        level_db = 20.0 * np.log10(np.maximum(rms, 1e-9))
    opening = np.clip((level_db - (reference_db - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB, 0.0, 1.0)
    opening[rms < SILENCE_RMS] = 0.0
    smoothed = np.empty_like(opening)
    current = 0.0
    for i, target in enumerate(opening):
        rate = attack if target > current else release
        current += rate * (target - current)
        smoothed[i] = current
    return tuple(round(float(v), 3) for v in smoothed)


def level(samples: np.ndarray, sample_rate: int) -> float:
    """The RMS level (0..1 full scale) of the sounding part of a piece of audio (pauses left out)."""
    rms = window_rms(samples, sample_rate)
    active = rms[rms >= SILENCE_RMS]
    if active.size == 0:
        return 0.0
    return float(min(1.0, math.sqrt(float(np.mean(active.astype(np.float64) ** 2)))))
