"""The Transcriber interface and factory, its result, and the hallucination guard against phantom turns."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from assistant.audio.level import rms
from assistant.config.schema import AsrConfig
from assistant.text import normalise_phrase


@dataclass(frozen=True, slots=True)
class Transcript:
    """What a Transcriber heard in one utterance."""

    text: str
    language: str
    #: The model's probability that the audio holds no speech at all (0..1).
    no_speech_prob: float = 0.0
    #: Mean log-probability of the decoded tokens (closer to 0: more confident).
    avg_logprob: float = 0.0
    duration_s: float = 0.0
    #: Mel frames (10 ms each) the encoder saw: under 3000 for a window fitted to the utterance, 3000 for
    #: Whisper's full 30 s window, 0 when the backend does not say.
    window_frames: int = 0
    #: True when a fitted window's result looked degenerate and the full window decided the text instead.
    is_fallback: bool = False


class StaleTranscription(Exception):
    """The caller's ``is_stale()`` said the job is no longer wanted; raised at a step boundary (before the
    encoder or between the encoder and the decoder), so an abandoned job stops competing for the cores."""


@runtime_checkable
class Transcriber(Protocol):
    """Speech recognition: load once, then transcribe 16 kHz mono float32 utterances (blocking calls)."""

    def load(self) -> None:
        """Load the model (slow, blocking; call it from a worker thread). Raises ModelMissing/MissingExtra."""

    def transcribe(self, audio: np.ndarray, *, prompt: str | None = None, language: str | None = None,
                   is_stale: Callable[[], bool] | None = None) -> Transcript:
        """Recognise one utterance (blocking).

        ``prompt``: the previous segment's text (context for the recogniser); ``language``: force this
        language for this call (else the configured one, or detection); ``is_stale``: polled at step
        boundaries — when it returns True the call raises :class:`StaleTranscription`."""

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """The language of the start of an utterance and its probability (blocking)."""


class HallucinationGuard:
    """Decides which utterances make no turn: near silence, 'no speech' by the model, or a phantom phrase.

    Whisper invents well-known phrases from silence and noise (「ご視聴ありがとうございました」,
    "Thanks for watching"). A transcript made only of blocklisted phrases (compared without punctuation,
    spaces or case, possibly repeated) is rejected; one that merely contains such a phrase is kept.
    """

    def __init__(self, rms_gate: float = 0.004, no_speech_threshold: float = 0.6,
                 blocklist: Iterable[str] = ()) -> None:
        self.rms_gate = rms_gate
        self.no_speech_threshold = no_speech_threshold
        phrases = sorted({p for p in (normalise_phrase(b) for b in blocklist) if p}, key=len, reverse=True)
        self._blocked = re.compile("|".join(re.escape(p) for p in phrases)) if phrases else None

    @classmethod
    def from_config(cls, cfg: AsrConfig) -> HallucinationGuard:
        return cls(rms_gate=cfg.rms_gate, no_speech_threshold=cfg.no_speech_threshold, blocklist=cfg.blocklist)

    def check_audio(self, audio: np.ndarray, sample_rate: int = 16000) -> str | None:
        """A reason to skip transcription, or None."""
        if audio.size < sample_rate // 10:
            return "no audio"
        level = rms(audio)
        if level < self.rms_gate:
            return f"too quiet (RMS {level:.4f} < {self.rms_gate})"
        return None

    def is_blocked(self, text: str) -> bool:
        """True when the text is nothing but blocklisted phrases."""
        normal = normalise_phrase(text)
        if not normal or self._blocked is None:
            return False
        return not self._blocked.sub("", normal)

    def check_transcript(self, transcript: Transcript) -> str | None:
        """A reason to drop the turn, or None."""
        if not normalise_phrase(transcript.text):
            return "nothing recognised"
        if transcript.no_speech_prob >= self.no_speech_threshold:
            return f"no speech (p={transcript.no_speech_prob:.2f})"
        if self.is_blocked(transcript.text):
            return f"phantom phrase: {transcript.text.strip()!r}"
        return None


def make_transcriber(cfg: AsrConfig) -> Transcriber:
    """The Transcriber the config asks for (not loaded yet)."""
    if cfg.backend == "faster-whisper":
        from assistant.speech.whisper import WhisperTranscriber

        return WhisperTranscriber.from_config(cfg)
    raise ValueError(f"unknown ASR backend {cfg.backend!r}")  # the schema allows no other
