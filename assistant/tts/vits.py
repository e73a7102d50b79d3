"""VITS voices through transformers (VitsModel + its tokenizer): MMS-TTS or any VITS checkpoint, by id or path."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import MissingExtra, ModelMissing
from assistant.threads import configure_torch, prefer_passive_waiting
from assistant.tts.synthesizer import Style, apply_volume
from assistant.tts.voices import find_vits_model

log = logging.getLogger(__name__)

_NON_ROMAN = re.compile(r"[^\x00-\x7F]")


class VitsSynthesizer:
    """One VITS checkpoint, loaded once; speed via ``model.speaking_rate``."""

    def __init__(self, voice: str, voices_dir: Path | None = None, device: str = "cpu") -> None:
        self.voice = voice
        self.name = f"vits:{voice}"
        self._voices_dir = voices_dir
        self._device = device
        self._model: Any = None
        self._tokenizer: Any = None
        self._romanizer: Any = None
        self._default_noise = (0.667, 0.8)
        self._lock = threading.Lock()

    @property
    def sample_rate(self) -> int:
        self.load()
        return int(self._model.config.sampling_rate)

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            prefer_passive_waiting()  # before torch loads its OpenMP runtime
            try:
                import torch  # noqa: F401 - VitsModel needs it
                from transformers import AutoTokenizer, VitsModel
            except ImportError as exc:
                raise MissingExtra(exc.name or "transformers", "vits", "the VITS voice") from None
            source = find_vits_model(self.voice, self._voices_dir)
            try:
                tokenizer = AutoTokenizer.from_pretrained(source)
                loaded: Any = VitsModel.from_pretrained(source)  # (transformers' stubs mistype .to())
                model = loaded.to(self._device).eval()
            except OSError as exc:
                log.debug("loading %s failed", source, exc_info=True)
                raise ModelMissing(f"cannot load the VITS voice {source!r} ({str(exc).splitlines()[0]}) — "
                                   f"give a local folder or run `saijin voices download NAME`") from None
            if getattr(tokenizer, "phonemize", False):
                try:
                    import phonemizer  # noqa: F401
                except ImportError:
                    raise MissingExtra("phonemizer", "vits", f"the VITS voice {source}") from None
            self._tokenizer, self._model = tokenizer, model
            self._default_noise = (float(model.noise_scale), float(model.noise_scale_duration))
            log.info("loaded VITS voice %s (%d Hz)", source, model.config.sampling_rate)

    def _romanize(self, text: str) -> str:
        """MMS voices of non-Latin scripts expect uroman's romanisation (made once, not per call)."""
        if not getattr(self._tokenizer, "is_uroman", False) or not _NON_ROMAN.search(text):
            return text
        if self._romanizer is None:
            try:
                import uroman
            except ImportError:
                raise MissingExtra("uroman", "vits", f"the VITS voice {self.voice}") from None
            self._romanizer = uroman.Uroman()
        return str(self._romanizer.romanize_string(text))

    def synthesize(self, text: str, style: Style) -> tuple[np.ndarray, int]:
        import torch

        self.load()
        rate = int(self._model.config.sampling_rate)
        with self._lock:
            inputs = self._tokenizer(self._romanize(text), return_tensors="pt")
            ids = inputs["input_ids"]
            pad = self._tokenizer.pad_token_id
            if ids.shape[-1] == 0 or bool((ids == pad).all()):
                return np.zeros(0, dtype=np.float32), rate
            model = self._model
            model.speaking_rate = style.speaking_rate
            default_noise, default_noise_w = self._default_noise
            model.noise_scale = default_noise if style.noise_scale is None else style.noise_scale
            model.noise_scale_duration = default_noise_w if style.noise_w is None else style.noise_w
            kwargs: dict[str, Any] = {}
            if style.speaker_id is not None and (model.config.num_speakers or 1) > 1:
                kwargs["speaker_id"] = style.speaker_id
            configure_torch("tts")  # torch's threads are per process: the TTS budget while this runs
            with torch.no_grad():
                waveform = model(**inputs.to(self._device), **kwargs).waveform
        return apply_volume(waveform[0].cpu().numpy(), style.volume), rate
