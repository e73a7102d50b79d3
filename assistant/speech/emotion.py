"""The EmotionTagger interface, the mapping of a model's labels to the canonical set, and its factory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from assistant.config.schema import CANONICAL_EMOTIONS, EmotionConfig


@runtime_checkable
class EmotionTagger(Protocol):
    """Speech emotion: load once, then score 16 kHz mono float32 utterances (blocking calls).

    ``is_calibrated`` says whether its scores are probabilities learnt from labelled speech (a trained
    model) rather than a heuristic's guess; only a calibrated tagger's label is shown to the user."""

    is_calibrated: bool

    def load(self) -> None:
        """Load the model (slow, blocking; call it from a worker thread)."""

    def scores(self, audio: np.ndarray) -> dict[str, float]:
        """The model's own labels -> probability (blocking)."""


@dataclass(frozen=True, slots=True)
class EmotionResult:
    """A canonical label, its score, and every canonical label's score."""

    label: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)


def canonical_scores(raw: dict[str, float], label_map: dict[str, str]) -> dict[str, float]:
    """Sum the model's scores per canonical label. Labels are matched as given, then case-insensitively;
    a label that is already canonical maps to itself; others are left out."""
    lowered = {key.casefold(): value for key, value in label_map.items()}
    out: dict[str, float] = {}
    for label, score in raw.items():
        target = label_map.get(label) or lowered.get(label.casefold())
        if target is None and label.casefold() in CANONICAL_EMOTIONS:
            target = label.casefold()
        if target is None:
            continue
        out[target] = out.get(target, 0.0) + float(score)
    return out


def decide_emotion(raw: dict[str, float], label_map: dict[str, str], threshold: float) -> EmotionResult:
    """The canonical label with the highest score; neutral when that score is under ``threshold``.

    A neutral verdict's score is how sure we are of "nothing in particular": the neutral score itself,
    or 1 minus the best other score, whichever is higher.
    """
    scores = canonical_scores(raw, label_map)
    if not scores:
        return EmotionResult(label="neutral", score=0.0, scores={})
    label, score = max(scores.items(), key=lambda item: item[1])
    if score < threshold and label != "neutral":
        return EmotionResult(label="neutral", score=max(scores.get("neutral", 0.0), 1.0 - score), scores=scores)
    return EmotionResult(label=label, score=score, scores=scores)


def make_emotion_tagger(cfg: EmotionConfig) -> EmotionTagger | None:
    """The EmotionTagger the config asks for (not loaded yet), or None when emotion is off."""
    if not cfg.enabled:
        return None
    if cfg.backend == "prosody":
        from assistant.speech.emotion_prosody import ProsodyEmotionTagger

        return ProsodyEmotionTagger()
    from assistant.speech.emotion_transformers import TransformersEmotionTagger

    return TransformersEmotionTagger(model=cfg.model, device=cfg.device)
