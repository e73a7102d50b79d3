"""Speech emotion with a transformers ``audio-classification`` model (wav2vec2-style), by hub name or folder."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import MissingExtra, ModelMissing
from assistant.models.offline import resolve_model
from assistant.threads import configure_torch, prefer_passive_waiting

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


class TransformersEmotionTagger:
    """``pipeline("audio-classification", model=...)`` on 16 kHz float32 arrays; returns every label's score.

    A classifier trained on labelled emotional speech: its softmax scores count as calibrated."""

    is_calibrated = True

    def __init__(self, model: str = "superb/wav2vec2-base-superb-er", device: str = "auto") -> None:
        self.model_name = model
        self.device = device
        self._pipe: Any = None
        self._lock = threading.Lock()

    @property
    def labels(self) -> list[str]:
        if self._pipe is None:
            return []
        return [self._pipe.model.config.id2label[i] for i in sorted(self._pipe.model.config.id2label)]

    def load(self) -> None:
        with self._lock:
            if self._pipe is not None:
                return
            prefer_passive_waiting()  # before torch loads its OpenMP runtime
            try:
                import torch
                from transformers import pipeline
            except ImportError as exc:
                raise MissingExtra(exc.name or "transformers", "emotion", "speech emotion tagging") from None
            device = self.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            source = resolve_model(self.model_name)
            if source.startswith(("/", "./", "../", "~")) and not Path(source).exists():
                raise ModelMissing(f"emotion.model: the emotion model folder {source} does not exist — "
                                   f"fix the path or use a model name")
            try:
                self._pipe = pipeline("audio-classification", model=source, device=device)
            except Exception as exc:
                log.debug("loading emotion model %s failed", source, exc_info=True)
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ModelMissing(
                    f"cannot load the emotion model {self.model_name!r} ({reason}) — set emotion.model to a "
                    f"Hugging Face audio-classification model or a local folder, or emotion.backend: prosody"
                ) from None
            log.info("emotion model %s loaded on %s", self.model_name, device)

    def scores(self, audio: np.ndarray) -> dict[str, float]:
        if self._pipe is None:
            self.load()
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        configure_torch("emotion")  # torch's threads are per process: the emotion budget while this runs
        results = self._pipe({"raw": audio, "sampling_rate": SAMPLE_RATE},
                             top_k=self._pipe.model.config.num_labels)
        return {str(r["label"]): float(r["score"]) for r in results}
