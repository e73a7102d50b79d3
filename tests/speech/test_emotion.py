"""Emotion taggers: a tiny wav2vec2 classifier through the real transformers path, and the prosody tagger."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from assistant.config.schema import CANONICAL_EMOTIONS, EmotionConfig
from assistant.errors import ModelMissing
from assistant.speech.emotion import canonical_scores, decide_emotion, make_emotion_tagger
from assistant.speech.emotion_prosody import MAX_SCORE, ProsodyEmotionTagger, _frames, analyse, estimate_f0
from assistant.speech.emotion_transformers import TransformersEmotionTagger
from tests.fixtures.speech import SpeechMaker

RATE = 16000


def test_tiny_classifier_loads_like_a_real_model_and_maps_to_canonical(
        make_emotion_model: Callable[..., Path], emotion_label_map: dict[str, str],
        speech_maker: SpeechMaker) -> None:
    cfg = EmotionConfig(backend="transformers", model=str(make_emotion_model(force_label="hap")),
                        label_map=emotion_label_map, threshold=0.4)
    tagger = make_emotion_tagger(cfg)
    assert isinstance(tagger, TransformersEmotionTagger)
    tagger.load()
    raw = tagger.scores(speech_maker.english("What a lovely day!").samples)
    assert set(raw) == {"neu", "hap", "ang", "sad"}
    assert sum(raw.values()) == pytest.approx(1.0, abs=1e-4)
    result = decide_emotion(raw, cfg.label_map, cfg.threshold)
    assert result.label == "happy" and result.score > 0.9
    assert set(result.scores) <= set(CANONICAL_EMOTIONS)


def test_an_unsure_model_says_neutral(make_emotion_model: Callable[..., Path],
                                      emotion_label_map: dict[str, str]) -> None:
    tagger = TransformersEmotionTagger(str(make_emotion_model()), device="cpu")
    raw = tagger.scores(np.random.default_rng(0).normal(0, 0.05, RATE).astype(np.float32))
    assert max(raw.values()) < 0.4  # a random tiny model is nowhere near sure
    result = decide_emotion(raw, emotion_label_map, threshold=0.4)
    assert result.label == "neutral"
    assert 0.0 < result.score <= 1.0


def test_label_mapping_rules() -> None:
    label_map = {"hap": "happy", "exc": "happy", "ANG": "angry"}
    raw = {"hap": 0.3, "exc": 0.25, "ang": 0.2, "Calm": 0.15, "xyz": 0.1}
    scores = canonical_scores(raw, label_map)
    assert scores == pytest.approx({"happy": 0.55, "angry": 0.2, "calm": 0.15})
    assert decide_emotion(raw, label_map, threshold=0.5).label == "happy"
    assert decide_emotion(raw, label_map, threshold=0.6).label == "neutral"
    assert decide_emotion({}, label_map, threshold=0.5).label == "neutral"


def test_emotion_off_gives_no_tagger() -> None:
    assert make_emotion_tagger(EmotionConfig(enabled=False)) is None
    assert isinstance(make_emotion_tagger(EmotionConfig(backend="prosody")), ProsodyEmotionTagger)


def test_a_missing_emotion_model_is_one_clear_line(tmp_path: Path) -> None:
    tagger = make_emotion_tagger(EmotionConfig(backend="transformers", model=str(tmp_path / "nothing")))
    with pytest.raises(ModelMissing) as exc:
        tagger.load()
    assert "\n" not in str(exc.value) and "emotion.model" in str(exc.value)


# ------------------------------------------------------------------------------------------------
# Prosody
# ------------------------------------------------------------------------------------------------


def harmonic(f0: np.ndarray, amp: np.ndarray | float = 0.3) -> np.ndarray:
    """A voiced-like signal: 8 harmonics following the F0 contour ``f0`` (one value per sample)."""
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    return (amp * sum(np.sin(h * phase) / h for h in range(1, 9))).astype(np.float32)


@pytest.mark.parametrize("f0", [85.0, 130.0, 210.0, 330.0])
def test_autocorrelation_pitch_is_accurate(f0: float) -> None:
    signal = harmonic(np.full(RATE, f0))
    estimated, strength = estimate_f0(_frames(signal.astype(np.float64), 640, 160))
    assert np.median(estimated) == pytest.approx(f0, rel=0.01)
    assert np.median(strength) > 0.9


def test_unvoiced_noise_has_no_pitch() -> None:
    noise = np.random.default_rng(1).normal(0, 0.1, RATE)
    estimated, _ = estimate_f0(_frames(noise, 640, 160))
    assert np.mean(estimated > 0) < 0.2


def test_lively_speech_is_more_aroused_than_flat_quiet_speech() -> None:
    t = np.arange(3 * RATE) / RATE
    syllables = lambda rate: 0.1 + 0.9 * np.sin(np.pi * rate * t) ** 2  # noqa: E731 - `rate` loudness peaks/s
    lively = harmonic(200 * 2 ** (5 * np.sin(2 * np.pi * 1.5 * t) / 12), 0.4 * syllables(5.5))
    flat = harmonic(np.full(len(t), 110.0) * 2 ** (-1.5 * t / 12), 0.03 * syllables(3.0))
    lively_f, flat_f = analyse(lively), analyse(flat)
    assert lively_f.pitch_sd > 3.0 > 1.5 > flat_f.pitch_sd
    assert lively_f.syllable_rate == pytest.approx(5.5, abs=0.7)
    assert flat_f.syllable_rate == pytest.approx(3.0, abs=0.7)
    assert lively_f.arousal > 0.3 > -0.1 > flat_f.arousal
    assert flat_f.pitch_slope < -1.0
    tagger = ProsodyEmotionTagger()
    lively_scores, flat_scores = tagger.scores(lively), tagger.scores(flat)
    assert max(lively_scores, key=lively_scores.get) == "excited"
    assert max(flat_scores, key=flat_scores.get) == "tired"
    # Prosody cannot tell joy from anger, nor sadness from sleepiness: it claims neither, and never much.
    assert set(lively_scores) == set(flat_scores) == {"neutral", "tired", "excited"}
    assert max(lively_scores.values()) <= MAX_SCORE and max(flat_scores.values()) <= MAX_SCORE
    assert ProsodyEmotionTagger.is_calibrated is False and TransformersEmotionTagger.is_calibrated is True


def test_a_tired_voice_is_never_angry_however_loud_the_microphone(speech_maker: SpeechMaker) -> None:
    """The issue's sentence, as said and as a hot microphone (gain, clipping) brings it: no anger, modest."""
    tagger = ProsodyEmotionTagger()
    clip = speech_maker.japanese("こんばんは。今日は少し疲れちゃった。", speed=0.85)
    for gain in (0.1, 1.0, 4.0):
        audio = np.clip(clip.samples * gain, -1.0, 1.0)
        scores = tagger.scores(audio)
        assert set(scores) == {"neutral", "tired", "excited"}, scores
        assert scores["tired"] <= MAX_SCORE and scores["excited"] <= MAX_SCORE
        result = decide_emotion(scores, {}, 0.4)
        assert result.label in ("neutral", "tired"), (gain, scores)


def test_prosody_on_real_speech_gives_canonical_scores(speech_maker: SpeechMaker) -> None:
    tagger = make_emotion_tagger(EmotionConfig(backend="prosody"))
    tagger.load()
    for clip in (speech_maker.english("I can't believe we actually won the game!"),
                 speech_maker.japanese("こんばんは、今日もお疲れ様。")):
        features = analyse(clip.samples)
        assert features is not None and 60 < features.f0_median_hz < 400
        scores = tagger.scores(clip.samples)
        assert set(scores) <= set(CANONICAL_EMOTIONS)
        assert sum(scores.values()) == pytest.approx(1.0)
    assert tagger.scores(np.zeros(RATE, np.float32)) == {"neutral": 1.0}
