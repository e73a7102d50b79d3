"""Speech recognition with the real Whisper models on segments cut by the real VAD, and the phantom guard."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from assistant.audio.vad import SegmentEnd, Segmenter
from assistant.config.schema import AsrConfig
from assistant.errors import ModelMissing
from assistant.speech.transcriber import HallucinationGuard, Transcript, make_transcriber
from assistant.speech.whisper import cpu_compute_type
from assistant.text import normalise_phrase
from tests.fixtures.speech import SpeechMaker, cer, wer, words


def segments(samples: np.ndarray) -> list[SegmentEnd]:
    segmenter = Segmenter()
    found = segmenter.push(samples) + segmenter.flush()
    return [s for s in found if isinstance(s, SegmentEnd)]


@pytest.fixture(scope="module")
def blocklist() -> list[str]:
    from assistant.config.loader import load_settings

    return load_settings().assistant.asr.blocklist


ENGLISH = ["Sometimes I forget where I put my keys.", "Hello there how are you today?",
           "Few people walked to the station that night."]


def test_english_through_the_vad_first_words_survive_and_wer_is_low(speech_maker: SpeechMaker,
                                                                     whisper_tiny_en: Any) -> None:
    clips = [speech_maker.english(text) for text in ENGLISH]
    audio = speech_maker.compose(0.7, clips[0], 1.0, clips[1], 1.0, clips[2], 0.8)
    found = segments(audio.samples)
    assert len(found) == 3
    for segment, text in zip(found, ENGLISH, strict=True):
        heard = whisper_tiny_en.transcribe(segment.audio)
        assert words(heard.text)[0] == words(text)[0], f"first word clipped: {heard.text!r}"
        assert wer(text, heard.text) <= 0.15, heard.text
        assert heard.language == "en"
        assert heard.no_speech_prob < 0.5


JAPANESE = ["こんばんは、今日もお疲れ様。", "明日の天気はどうかな。", "さっきの映画、すごく面白かったね。"]


def test_japanese_through_the_vad_cer_is_low(speech_maker: SpeechMaker, whisper_base_ja: Any) -> None:
    clips = [speech_maker.japanese(text) for text in JAPANESE]
    audio = speech_maker.compose(0.6, clips[0], 1.0, clips[1], 1.0, clips[2], 0.8)
    found = segments(audio.samples)
    assert len(found) == 3
    for segment, text in zip(found, JAPANESE, strict=True):
        heard = whisper_base_ja.transcribe(segment.audio)
        assert cer(text, heard.text) <= 0.3, heard.text
        assert heard.text[0] == text[0], f"first syllable clipped: {heard.text!r}"
        assert heard.language == "ja"


def test_auto_language_detects_japanese(speech_maker: SpeechMaker) -> None:
    transcriber = make_transcriber(AsrConfig(model="offline:whisper-base", language="auto"))
    clip = speech_maker.japanese(JAPANESE[0])
    heard = transcriber.transcribe(np.concatenate([np.zeros(4000, np.float32), clip.samples]))
    assert heard.language == "ja"
    assert cer(JAPANESE[0], heard.text) <= 0.3


def test_auto_device_is_the_cpu_with_its_faster_compute_type_without_a_gpu() -> None:
    transcriber = make_transcriber(AsrConfig(model="offline:whisper-tiny.en", device="auto", compute_type="auto",
                                             language="en"))
    transcriber.load()
    assert (transcriber.device, transcriber.compute_type) == ("cpu", cpu_compute_type())


@pytest.mark.parametrize(("flags", "expected"), [
    ("flags\t\t: fpu sse2 avx avx2 fma f16c", "float32"),
    ("flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni", "int8"),
    ("flags\t\t: fpu avx2 avx_vnni", "int8"),
    ("", "float32"),
])
def test_int8_only_where_the_cpu_has_int8_dot_products(flags: str, expected: str) -> None:
    assert cpu_compute_type(flags) == expected


def test_a_missing_model_is_one_clear_line(tmp_path: Any) -> None:
    transcriber = make_transcriber(AsrConfig(model=str(tmp_path / "no-model-here")))
    with pytest.raises(ModelMissing) as exc:
        transcriber.load()
    assert "\n" not in str(exc.value) and "asr.model" in str(exc.value)


# ------------------------------------------------------------------------------------------------
# The hallucination guard
# ------------------------------------------------------------------------------------------------


def test_blocklisted_phrases_match_without_punctuation_space_or_case(blocklist: list[str]) -> None:
    guard = HallucinationGuard(blocklist=blocklist)
    for text in ("Thanks for watching!", "thanks  for watching.", "THANKS FOR WATCHING", " Thank you for watching! ",
                 "ご視聴ありがとうございました。", "ご視聴 ありがとう ございました!",
                 "ご視聴ありがとうございました。チャンネル登録お願いします。", "Thanks for watching. Thanks for watching."):
        assert guard.is_blocked(text), text
    for text in ("Thanks for watching the kids last night.", "字幕をつけてください", "Thanks!", ""):
        assert not guard.is_blocked(text), text
    assert normalise_phrase("Ｔｈａｎｋｓ、ｆｏｒ　ｗａｔｃｈｉｎｇ！") == "thanksforwatching"


def test_real_phantom_phrases_are_rejected(speech_maker: SpeechMaker, whisper_tiny_en: Any, whisper_base_ja: Any,
                                           blocklist: list[str]) -> None:
    guard = HallucinationGuard(blocklist=blocklist)
    english = whisper_tiny_en.transcribe(speech_maker.compose(0.3, speech_maker.english("Thanks for watching!"),
                                                              0.3).samples)
    assert guard.check_transcript(english) is not None, english
    japanese = whisper_base_ja.transcribe(speech_maker.compose(
        0.3, speech_maker.japanese("ご視聴ありがとうございました。"), 0.3).samples)
    assert guard.check_transcript(japanese) is not None, japanese


def test_silence_and_noise_are_rejected(whisper_tiny_en: Any, whisper_base_ja: Any) -> None:
    guard = HallucinationGuard(rms_gate=0.004, no_speech_threshold=0.6)
    silence = np.zeros(32000, np.float32)
    hum = (0.002 * np.sin(2 * np.pi * 50 * np.arange(32000) / 16000)).astype(np.float32)
    assert guard.check_audio(silence) is not None
    assert guard.check_audio(hum) is not None
    noise = np.random.default_rng(3).normal(0, 0.02, 32000).astype(np.float32)
    assert guard.check_audio(noise) is None  # loud enough to be heard: the model has to judge it
    for model in (whisper_tiny_en, whisper_base_ja):
        assert guard.check_transcript(model.transcribe(noise)) is not None


def test_guard_keeps_real_speech_transcripts() -> None:
    guard = HallucinationGuard(blocklist=["Thanks for watching"])
    heard = Transcript(text="Turn on the lights.", language="en", no_speech_prob=0.05, avg_logprob=-0.2)
    assert guard.check_transcript(heard) is None
    assert guard.check_transcript(Transcript(text=" … ", language="en")) == "nothing recognised"
    assert "no speech" in guard.check_transcript(Transcript(text="Hmm.", language="en", no_speech_prob=0.9))
