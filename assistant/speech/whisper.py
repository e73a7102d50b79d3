"""The faster-whisper (CTranslate2) Transcriber: model by name, path or offline:NAME; CUDA or CPU.

An utterance of up to 30 s is encoded on a window fitted to it (its frames plus a margin, see
:mod:`assistant.speech.whisper_window`) instead of Whisper's padded 30 s window, and redone on the full
window when the short result looks degenerate. Longer audio takes faster-whisper's own long-form path.
On a CPU one decode runs at a time (one CTranslate2 worker) on the ASR share of the cores.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from assistant.config.schema import AsrConfig
from assistant.errors import MissingExtra, ModelMissing
from assistant.models.offline import resolve_model
from assistant.speech.transcriber import StaleTranscription, Transcript
from assistant.speech.whisper_window import (
    FULL_FRAMES,
    SAMPLE_RATE,
    Decoded,
    Thresholds,
    WindowDecoder,
    WindowPolicy,
    degeneracy,
)

log = logging.getLogger(__name__)

WINDOWS = ("fitted", "full")


def cpu_compute_type(cpu_flags: str | None = None) -> str:
    """The faster CTranslate2 compute type for Whisper on this CPU: int8 where the CPU has int8 dot-product
    instructions (AVX-512 VNNI, AVX-VNNI, AMX), else float32 — measured on a 2-core AMD EPYC without them,
    whisper-base decodes 1.5-2x faster in float32 than in int8 (docs/benchmarks.md, "ASR compute type")."""
    if cpu_flags is None:
        try:
            cpu_flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                              if line.startswith("flags")), "")
        except OSError:
            cpu_flags = ""
    flags = set(cpu_flags.partition(":")[2].split())
    return "int8" if flags & {"avx512_vnni", "avx_vnni", "amx_int8"} else "float32"


def pick_device(device: str, compute_type: str) -> tuple[str, str]:
    """``auto`` -> CUDA with float16 when CTranslate2 sees a GPU, else CPU with `cpu_compute_type`."""
    if device == "auto":
        try:
            import ctranslate2

            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        except Exception:  # a broken CUDA install must not stop the CPU path
            log.debug("CUDA probe failed", exc_info=True)
            device = "cpu"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else cpu_compute_type()
    return device, compute_type


def asr_threads() -> int:
    """CTranslate2's intra-op threads for the recogniser: the ASR share of the machine's cores."""
    try:
        from assistant.threads import cpu_threads
    except ImportError:  # the thread budget module is optional here: all cores
        return os.cpu_count() or 1
    return cpu_threads("asr")


def _check(is_stale: Callable[[], bool] | None) -> None:
    if is_stale is not None and is_stale():
        raise StaleTranscription("the transcription was abandoned: its audio is stale")


class WhisperTranscriber:
    """Whisper through faster-whisper. The model loads once (``load()``, blocking); transcription is
    blocking too (run it in a worker thread). faster-whisper's own VAD is off: utterances come segmented.

    ``window``: ``"fitted"`` encodes an utterance of up to 30 s on its own length plus a margin (with the
    full window as fallback), ``"full"`` always on Whisper's 30 s window (for comparison). ``cpu_threads``
    0 means the ASR share of the cores (:func:`asr_threads`). ``english``: a smaller English-only
    transcriber that writes what is known to be English (forced, or probed early with
    :meth:`detect_language`): on a CPU whisper-base's decoder is most of an English transcription."""

    def __init__(self, model: str = "large-v3-turbo", device: str = "auto", compute_type: str = "auto",
                 language: str = "ja", beam_size: int = 1, initial_prompt: str | None = None,
                 hotwords: str | None = None, cpu_threads: int = 0, window: str = "fitted",
                 policy: WindowPolicy | None = None, thresholds: Thresholds | None = None,
                 english: WhisperTranscriber | None = None) -> None:
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {', '.join(WINDOWS)} (got {window!r})")
        self.model_name = model
        self.device = device
        self.compute_type = compute_type
        self.language = None if language in ("", "auto") else language
        self.beam_size = beam_size
        self.initial_prompt = initial_prompt or None
        self.hotwords = hotwords or None
        self.cpu_threads = cpu_threads
        self.window = window
        self.policy = policy or WindowPolicy()
        self.thresholds = thresholds or Thresholds()
        self.english = english
        #: Seconds per step of the last call (features, encode, detect, generate, fallback): for benchmarks.
        self.last_timings: dict[str, float] = {}
        #: The decode that made the last transcript (its loop count, token count, compression ratio).
        self.last_decoded: Decoded | None = None
        self._model: Any = None
        self._decoder: WindowDecoder | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: AsrConfig) -> WhisperTranscriber:
        thresholds = Thresholds(no_speech_prob=cfg.no_speech_threshold)
        english = None
        if cfg.english_model and cfg.english_model != cfg.model:
            english = cls(model=cfg.english_model, device=cfg.device, compute_type=cfg.compute_type,
                          language="en", beam_size=cfg.beam_size, hotwords=cfg.hotwords, thresholds=thresholds)
        return cls(model=cfg.model, device=cfg.device, compute_type=cfg.compute_type, language=cfg.language,
                   beam_size=cfg.beam_size, initial_prompt=cfg.initial_prompt, hotwords=cfg.hotwords,
                   thresholds=thresholds, english=english)

    @property
    def is_loaded(self) -> bool:
        return self._model is not None and (self.english is None or self.english.is_loaded)

    def load(self) -> None:
        if self.english is not None:
            self.english.load()
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
            # On a CPU one decode at a time: two at once on two cores each take twice as long, so a second
            # worker only lets a stale job slow the one that matters. A GPU runs two side by side well.
            workers = 2 if device == "cuda" else 1
            threads = self.cpu_threads or asr_threads()
            try:
                self._model = WhisperModel(source, device=device, compute_type=compute_type,
                                           cpu_threads=threads, num_workers=workers)
            except Exception as exc:
                log.debug("loading Whisper %s failed", source, exc_info=True)
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ModelMissing(
                    f"cannot load the Whisper model {self.model_name!r} on {device}/{compute_type} ({reason}) — "
                    f"set asr.model to a faster-whisper name that can be downloaded, a local model folder, "
                    f"or offline:whisper-base"
                ) from None
            self._decoder = WindowDecoder(self._model, beam_size=self.beam_size, hotwords=self.hotwords)
            self.device, self.compute_type = device, compute_type
            log.info("Whisper %s loaded (%s, %s, %d threads, %d worker%s)", self.model_name, device,
                     compute_type, threads, workers, "" if workers == 1 else "s")

    @property
    def decoder(self) -> WindowDecoder:
        """The window decoder of the loaded model (loading it first if needed)."""
        if self._decoder is None:
            self.load()
        if self._decoder is None:
            raise ModelMissing(f"the Whisper model {self.model_name!r} did not load")
        return self._decoder

    # ------------------------------------------------------------------ transcription

    def transcribe(self, audio: np.ndarray, *, prompt: str | None = None, language: str | None = None,
                   is_stale: Callable[[], bool] | None = None) -> Transcript:
        """Recognise one utterance; ``prompt`` is the previous segment's text, ``language`` forces a
        language for this call, ``is_stale`` is polled before the encoder and before each decode (raising
        :class:`StaleTranscription` when it says True)."""
        if self._model is None:
            self.load()
        self.last_timings = {}
        audio = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
        language = self._language_for(language)
        if language == "en" and self.english is not None:
            transcript = self.english.transcribe(audio, prompt=prompt, is_stale=is_stale)
            self.last_timings = {f"english_{step}": s for step, s in self.english.last_timings.items()}
            self.last_decoded = self.english.last_decoded
            return transcript
        previous = " ".join(p.strip() for p in (self.initial_prompt, prompt) if p and p.strip()) or None
        _check(is_stale)
        if len(audio) > FULL_FRAMES * SAMPLE_RATE // 100:
            return self._transcribe_long(audio, language, previous)
        started = time.perf_counter()
        features = self.decoder.features(audio)
        self.last_timings["features"] = time.perf_counter() - started
        duration_s = len(audio) / SAMPLE_RATE
        frames = FULL_FRAMES if self.window == "full" else self.policy.frames(features.shape[-1])
        decoded = self._decode(features, frames, language, previous, duration_s, is_stale)
        is_fallback = False
        reason = degeneracy(decoded, self.thresholds) if frames < FULL_FRAMES else None
        if reason is not None:
            log.debug("fitted window (%d frames) looks degenerate (%s): %r; trying the full window",
                      frames, reason, decoded.text)
            _check(is_stale)
            started = time.perf_counter()
            decoded = self._decode(features, FULL_FRAMES, language, previous, duration_s, is_stale)
            self.last_timings["fallback"] = time.perf_counter() - started
            is_fallback = True
        self.last_decoded = decoded
        return Transcript(text=decoded.text, language=decoded.language, no_speech_prob=decoded.no_speech_prob,
                          avg_logprob=decoded.avg_logprob, duration_s=duration_s,
                          window_frames=decoded.window_frames, is_fallback=is_fallback)

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        """The language of ``audio`` (the start of an utterance) by this model's encoder on a fitted window,
        and its probability; English-only models: ("en", 1.0)."""
        if not self.decoder.is_multilingual:
            return "en", 1.0
        audio = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)[: FULL_FRAMES * SAMPLE_RATE // 100]
        features = self.decoder.features(audio)
        encoded = self.decoder.encode(features, self.policy.frames(features.shape[-1]))
        return self.decoder.detect_language(encoded)

    def _language_for(self, language: str | None) -> str | None:
        """The language of this call: forced, else configured, else None (detect); English-only models: en."""
        if language in ("", "auto"):
            language = None
        language = language or self.language
        if not self.decoder.is_multilingual:
            return "en"
        return language

    def _decode(self, features: np.ndarray, frames: int, language: str | None, previous: str | None,
                duration_s: float, is_stale: Callable[[], bool] | None) -> Decoded:
        """Encode ``frames`` frames, detect the language if needed, then decode (checking ``is_stale``
        between the encoder and the decoder)."""
        decoder = self.decoder
        started = time.perf_counter()
        encoded = decoder.encode(features, frames)
        self.last_timings.setdefault("encode", time.perf_counter() - started)
        _check(is_stale)
        probability = 1.0
        if language is None:
            started = time.perf_counter()
            language, probability = decoder.detect_language(encoded)
            self.last_timings.setdefault("detect", time.perf_counter() - started)
        started = time.perf_counter()
        decoded = decoder.generate(encoded, language, probability, previous, duration_s, frames)
        self.last_timings.setdefault("generate", time.perf_counter() - started)
        return decoded

    def _transcribe_long(self, audio: np.ndarray, language: str | None, previous: str | None) -> Transcript:
        """Over 30 s: faster-whisper's own path (30 s windows one after another)."""
        segments, info = self._model.transcribe(
            audio, language=language, beam_size=self.beam_size, initial_prompt=previous,
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
        return Transcript(text=text, language=info.language or (language or ""), no_speech_prob=no_speech,
                          avg_logprob=logprob, duration_s=len(audio) / SAMPLE_RATE, window_frames=FULL_FRAMES)
