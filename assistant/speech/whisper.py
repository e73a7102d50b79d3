"""The faster-whisper (CTranslate2) Transcriber: model by name, path or offline:NAME; CUDA or CPU."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from assistant.config.schema import AsrConfig
from assistant.errors import MissingExtra, ModelMissing
from assistant.models.offline import resolve_model
from assistant.speech.transcriber import Transcript

log = logging.getLogger(__name__)


def pick_device(device: str, compute_type: str) -> tuple[str, str]:
    """``auto`` -> CUDA with float16 when CTranslate2 sees a GPU, else CPU with int8."""
    if device == "auto":
        try:
            import ctranslate2

            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        except Exception:  # a broken CUDA install must not stop the CPU path
            log.debug("CUDA probe failed", exc_info=True)
            device = "cpu"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


class WhisperTranscriber:
    """Whisper through faster-whisper. The model loads once (``load()``, blocking); transcription is
    blocking too (run it in a worker thread). faster-whisper's own VAD is off: utterances come segmented."""

    def __init__(self, model: str = "large-v3-turbo", device: str = "auto", compute_type: str = "auto",
                 language: str = "ja", beam_size: int = 1, initial_prompt: str | None = None,
                 hotwords: str | None = None, cpu_threads: int = 0) -> None:
        self.model_name = model
        self.device = device
        self.compute_type = compute_type
        self.language = None if language in ("", "auto") else language
        self.beam_size = beam_size
        self.initial_prompt = initial_prompt or None
        self.hotwords = hotwords or None
        self.cpu_threads = cpu_threads
        self._model: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: AsrConfig) -> WhisperTranscriber:
        return cls(model=cfg.model, device=cfg.device, compute_type=cfg.compute_type, language=cfg.language,
                   beam_size=cfg.beam_size, initial_prompt=cfg.initial_prompt, hotwords=cfg.hotwords)

    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            try:
                from faster_whisper import WhisperModel
            except ImportError:
                raise MissingExtra("faster-whisper", "asr", "speech recognition") from None
            source = resolve_model(self.model_name)
            if source.startswith(("/", "./", "../", "~")) and not Path(source).exists():
                raise ModelMissing(f"asr.model: the Whisper model folder {source} does not exist — "
                                   f"fix the path or use a model name")
            device, compute_type = pick_device(self.device, self.compute_type)
            try:
                # Two workers: a speculative transcription that turned out stale (the user went on
                # speaking) runs to its end beside the final one instead of in front of it.
                self._model = WhisperModel(source, device=device, compute_type=compute_type,
                                           cpu_threads=self.cpu_threads, num_workers=2)
            except Exception as exc:
                log.debug("loading Whisper %s failed", source, exc_info=True)
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ModelMissing(
                    f"cannot load the Whisper model {self.model_name!r} on {device}/{compute_type} ({reason}) — "
                    f"set asr.model to a faster-whisper name that can be downloaded, a local model folder, "
                    f"or offline:whisper-base"
                ) from None
            self.device, self.compute_type = device, compute_type
            log.info("Whisper %s loaded (%s, %s)", self.model_name, device, compute_type)

    def transcribe(self, audio: np.ndarray) -> Transcript:
        if self._model is None:
            self.load()
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        segments, info = self._model.transcribe(
            audio, language=self.language, beam_size=self.beam_size, initial_prompt=self.initial_prompt,
            hotwords=self.hotwords, vad_filter=False, condition_on_previous_text=False, without_timestamps=True,
            temperature=0.0, no_speech_threshold=None,
        )
        segments = list(segments)  # decoding happens here
        text = "".join(s.text for s in segments).strip()
        if segments:
            weights = np.array([max(s.end - s.start, 1e-3) for s in segments])
            no_speech = float(np.average([s.no_speech_prob for s in segments], weights=weights))
            logprob = float(np.average([s.avg_logprob for s in segments], weights=weights))
        else:
            no_speech, logprob = 1.0, -10.0
        return Transcript(text=text, language=info.language or (self.language or ""), no_speech_prob=no_speech,
                          avg_logprob=logprob, duration_s=len(audio) / 16000.0)
