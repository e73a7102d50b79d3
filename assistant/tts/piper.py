"""Piper voices (piper-tts, ONNX): by manifest name, by .onnx path, or offline:joe-us."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import MissingExtra, ModelMissing
from assistant.tts.synthesizer import Style, apply_volume
from assistant.tts.voices import find_piper_voice

log = logging.getLogger(__name__)


class PiperSynthesizer:
    """One Piper voice, loaded once (and run once, so the first sentence is as fast as the rest); ``synthesize``
    is safe to call from worker threads. Its ONNX session keeps to the TTS thread budget (``assistant.threads``)."""

    def __init__(self, voice: str, voices_dir: Path | None = None) -> None:
        self.voice = voice
        self.name = f"piper:{voice}"
        self._voices_dir = voices_dir
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def sample_rate(self) -> int:
        self.load()
        return int(self._model.config.sample_rate)

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            try:
                import piper  # noqa: F401
            except ImportError:
                raise MissingExtra("piper-tts", "piper", "the Piper voice") from None
            model_path, config_path = find_piper_voice(self.voice, self._voices_dir)
            try:
                self._model = _load_voice(model_path, config_path)
            except Exception as exc:
                log.debug("loading %s failed", model_path, exc_info=True)
                raise ModelMissing(f"cannot load the Piper voice {model_path}: {exc} — "
                                   f"download it again with `saijin voices download`") from None
            self.name = f"piper:{Path(model_path).stem}"
            for _chunk in self._model.synthesize("Hi."):  # warm-up: espeak-ng and the first ONNX run
                pass
            log.info("loaded Piper voice %s", model_path)

    def synthesize(self, text: str, style: Style) -> tuple[np.ndarray, int]:
        from piper import SynthesisConfig

        self.load()
        config = SynthesisConfig(
            speaker_id=style.speaker_id,
            length_scale=style.length_scale,
            noise_scale=style.noise_scale,
            noise_w_scale=style.noise_w,
            volume=1.0,
        )
        with self._lock:
            chunks = [chunk.audio_float_array for chunk in self._model.synthesize(text, config)]
        samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        return apply_volume(samples, style.volume), int(self._model.config.sample_rate)


def _load_voice(model_path: Path, config_path: Path) -> Any:
    """A PiperVoice whose ONNX session keeps to the TTS thread budget with no spin-waiting threads.

    ``PiperVoice.load`` builds its session with default options (one thread per core, spinning); the voice
    is a plain dataclass, so it is built here with our session instead.
    """
    import json

    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    from assistant.threads import onnx_session_options

    config = PiperConfig.from_dict(json.loads(Path(config_path).read_text(encoding="utf-8")))
    session = onnxruntime.InferenceSession(str(model_path), sess_options=onnx_session_options("tts", onnxruntime),
                                           providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=config)
