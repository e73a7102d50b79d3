"""The Synthesizer interface, the speaking Style taken from a persona's voice config, and the voice cache."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from assistant.config.schema import VoiceConfig


@dataclass(frozen=True, slots=True)
class Style:
    """How to speak one sentence: speed, loudness, noise and speaker (each backend uses what it knows)."""

    #: Piper and Kokoro: bigger is slower (Kokoro speed = 1 / length_scale).
    length_scale: float = 1.0
    #: VITS: bigger is faster.
    speaking_rate: float = 1.0
    volume: float = 1.0
    noise_scale: float | None = None
    noise_w: float | None = None
    speaker_id: int | None = None
    #: Silence after the sentence; None means the tts default (tts.sentence_pause_ms).
    sentence_pause_ms: int | None = None

    @classmethod
    def from_voice(cls, voice: VoiceConfig, bedtime: bool = False) -> Style:
        """The persona's usual voice, with its ``bedtime`` overlay laid over it in bedtime mode."""
        style = cls(length_scale=voice.length_scale, speaking_rate=voice.speaking_rate, volume=voice.volume,
                    noise_scale=voice.noise_scale, noise_w=voice.noise_w, speaker_id=voice.speaker_id)
        if bedtime:
            overlay = {name: value for name, value in voice.bedtime.model_dump().items() if value is not None}
            style = replace(style, **overlay)
        return style


@runtime_checkable
class Synthesizer(Protocol):
    """A loaded voice that turns one sentence into float32 mono samples."""

    #: A short name for logs and benchmarks, e.g. ``piper:en_US-joe-medium``.
    name: str

    def load(self) -> None:
        """Load the model (blocking; call it off the event loop). Calling it again does nothing."""

    def synthesize(self, text: str, style: Style) -> tuple[np.ndarray, int]:
        """Speak ``text``: float32 samples in [-1, 1] and their sample rate (blocking)."""
        ...


def apply_volume(samples: np.ndarray, volume: float) -> np.ndarray:
    """Scale samples by ``volume`` and keep them float32 within [-1, 1]."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if volume != 1.0:
        samples = samples * np.float32(volume)
    return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)


_CACHE: dict[tuple[str, str, str], Synthesizer] = {}
_CACHE_LOCK = threading.Lock()


def make_synthesizer(voice_cfg: VoiceConfig, voices_dir: Path | None = None) -> Synthesizer:
    """The synthesizer for a voice config, made once per (backend, voice) and shared after that.

    The backend module is imported here, so a missing optional package only matters when it is used;
    the model itself loads on the first ``load()`` (or the first sentence).
    """
    key = (voice_cfg.backend, voice_cfg.voice, str(voices_dir or ""))
    with _CACHE_LOCK:
        synth = _CACHE.get(key)
        if synth is None:
            synth = _build(voice_cfg, voices_dir)
            _CACHE[key] = synth
        return synth


def _build(voice_cfg: VoiceConfig, voices_dir: Path | None) -> Synthesizer:
    if voice_cfg.backend == "piper":
        from assistant.tts.piper import PiperSynthesizer

        return PiperSynthesizer(voice_cfg.voice, voices_dir=voices_dir)
    if voice_cfg.backend == "vits":
        from assistant.tts.vits import VitsSynthesizer

        return VitsSynthesizer(voice_cfg.voice, voices_dir=voices_dir)
    from assistant.tts.kokoro import KokoroSynthesizer

    return KokoroSynthesizer(voice_cfg.voice)
