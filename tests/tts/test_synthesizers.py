"""The Synthesizer backends with real voices: Piper joe, a tiny VITS built here, Kokoro Japanese."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.config.schema import VoiceConfig, VoiceStyle
from assistant.errors import ConfigError, ModelMissing
from assistant.tts.synthesizer import Style, make_synthesizer
from tests.fixtures.voices import build_tiny_vits


def test_style_takes_the_voice_and_lays_the_bedtime_overlay_over_it() -> None:
    voice = VoiceConfig(backend="piper", voice="x", length_scale=1.1, volume=0.9, noise_scale=0.5, speaker_id=2,
                        bedtime=VoiceStyle(length_scale=1.4, volume=0.5, sentence_pause_ms=800))
    normal = Style.from_voice(voice)
    assert (normal.length_scale, normal.volume, normal.noise_scale, normal.speaker_id) == (1.1, 0.9, 0.5, 2)
    assert normal.sentence_pause_ms is None
    bedtime = Style.from_voice(voice, bedtime=True)
    assert (bedtime.length_scale, bedtime.volume, bedtime.sentence_pause_ms) == (1.4, 0.5, 800)
    assert bedtime.speaking_rate == 1.0 and bedtime.noise_scale == 0.5  # not in the overlay: kept


def test_each_voice_is_made_once(joe_voice_cfg: VoiceConfig) -> None:
    same_voice_other_speed = joe_voice_cfg.model_copy(update={"length_scale": 2.0})
    assert make_synthesizer(joe_voice_cfg) is make_synthesizer(same_voice_other_speed)


def test_piper_joe_speaks_and_length_scale_slows_it(joe_voice_cfg: VoiceConfig) -> None:
    synth = make_synthesizer(joe_voice_cfg)
    text = "The quick brown fox jumps over the lazy dog."
    normal, rate = synth.synthesize(text, Style(length_scale=1.0))
    slow, slow_rate = synth.synthesize(text, Style(length_scale=1.6))
    assert rate == slow_rate == 22050
    assert normal.dtype == np.float32 and np.abs(normal).max() <= 1.0
    assert 1.0 < len(normal) / rate < 6.0
    assert len(slow) > 1.3 * len(normal)


def test_piper_volume_scales_the_samples(joe_voice_cfg: VoiceConfig) -> None:
    quiet, _ = make_synthesizer(joe_voice_cfg).synthesize("Good night.", Style(volume=0.4))
    assert 0.2 < np.abs(quiet).max() <= 0.4 + 1e-6


def test_unknown_piper_voice_says_what_to_do(tmp_path: Path) -> None:
    synth = make_synthesizer(VoiceConfig(backend="piper", voice="xx_XX-nobody-low"), voices_dir=tmp_path)
    with pytest.raises(ModelMissing) as caught:
        synth.load()
    message = str(caught.value)
    assert "xx_XX-nobody-low" in message and "saijin voices list" in message and "\n" not in message


def test_piper_voice_by_onnx_path(joe_voice_cfg: VoiceConfig) -> None:
    from assistant.models.offline import resolve_model

    onnx = resolve_model("offline:joe-us")
    samples, rate = make_synthesizer(VoiceConfig(backend="piper", voice=onnx)).synthesize("Hello.", Style())
    assert rate == 22050 and len(samples) > rate * 0.2


def test_tiny_vits_speaks_and_speaking_rate_changes_length(tiny_vits_voice_cfg: VoiceConfig) -> None:
    synth = make_synthesizer(tiny_vits_voice_cfg)
    text = "hello there, how are you today?"
    import torch

    torch.manual_seed(1)  # the random model's duration noise: the same draw for both
    fast, rate = synth.synthesize(text, Style(speaking_rate=2.0))
    torch.manual_seed(1)
    slow, _ = synth.synthesize(text, Style(speaking_rate=0.5))
    assert rate == 16000 and fast.dtype == np.float32
    assert len(fast) > 0 and len(slow) > 1.5 * len(fast)


def test_vits_volume_and_unspeakable_text(tiny_vits_voice_cfg: VoiceConfig) -> None:
    synth = make_synthesizer(tiny_vits_voice_cfg)
    quiet, _ = synth.synthesize("hello there", Style(volume=0.25))
    assert 0 < np.abs(quiet).max() <= 0.25 + 1e-6
    nothing, rate = synth.synthesize("日本語", Style())  # no character of the vocabulary, no romaniser
    assert len(nothing) == 0 and rate == 16000


def test_vits_romanises_non_latin_text_when_the_tokenizer_asks(tmp_path: Path) -> None:
    model_dir = build_tiny_vits(tmp_path / "uroman-vits", is_uroman=True)
    samples, _ = make_synthesizer(VoiceConfig(backend="vits", voice=str(model_dir))).synthesize(
        "こんばんは、お疲れ様。", Style())
    assert len(samples) > 0


def test_kokoro_speaks_japanese_and_length_scale_slows_it() -> None:
    synth = make_synthesizer(VoiceConfig(backend="kokoro", voice="jf_alpha"))
    normal, rate = synth.synthesize("こんばんは、今日もお疲れ様。", Style(length_scale=1.0, volume=0.5))
    slow, _ = synth.synthesize("こんばんは、今日もお疲れ様。", Style(length_scale=1.5))
    assert rate == 24000 and normal.dtype == np.float32
    assert len(normal) / rate > 0.8
    assert len(slow) > 1.2 * len(normal)
    assert np.abs(normal).max() <= 0.5 + 1e-6


def test_kokoro_rejects_an_unknown_voice() -> None:
    with pytest.raises(ConfigError, match="jf_alpha"):
        make_synthesizer(VoiceConfig(backend="kokoro", voice="af_nobody")).load()
