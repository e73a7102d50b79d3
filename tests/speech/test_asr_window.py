"""The encoder window fitted to the utterance, on the real Whisper models and real synthesised speech: it
reads what the full 30 s window reads, falls back to the full window on a degenerate result, stops at a
step boundary when the job goes stale, and takes a previous-text prompt and a forced language."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from assistant.speech.transcriber import HallucinationGuard, StaleTranscription
from assistant.speech.whisper import WhisperTranscriber
from assistant.speech.whisper_window import (
    FULL_FRAMES,
    Decoded,
    Thresholds,
    collapse_loop,
    degeneracy,
    is_repetitive,
)
from tests.fixtures.speech import SpeechMaker, cer, wer

JAPANESE = ["明日の天気はどうかな。", "さっきの映画、すごく面白かったね。"]
ENGLISH = ["Please turn on the kitchen lights.", "Sometimes I forget where I put my keys."]


@pytest.fixture(scope="module")
def tiny_en_full() -> WhisperTranscriber:
    transcriber = WhisperTranscriber("offline:whisper-tiny.en", device="auto", language="en", window="full")
    transcriber.load()
    return transcriber


@pytest.fixture(scope="module")
def base_ja_full() -> WhisperTranscriber:
    transcriber = WhisperTranscriber("offline:whisper-base", device="auto", language="ja", window="full")
    transcriber.load()
    return transcriber


def padded(samples: np.ndarray, seconds: float = 0.3) -> np.ndarray:
    silence = np.zeros(int(16000 * seconds), np.float32)
    return np.concatenate([silence, samples, silence])


def test_fitted_and_full_windows_read_the_same_japanese(speech_maker: SpeechMaker, whisper_base_ja: Any,
                                                        base_ja_full: WhisperTranscriber) -> None:
    for text in JAPANESE:
        audio = padded(speech_maker.japanese(text).samples)
        fitted, full = whisper_base_ja.transcribe(audio), base_ja_full.transcribe(audio)
        assert fitted.window_frames < FULL_FRAMES and not fitted.is_fallback
        assert full.window_frames == FULL_FRAMES
        assert fitted.language == full.language == "ja"
        assert cer(full.text, fitted.text) <= 0.15, (fitted.text, full.text)
        assert cer(text, fitted.text) <= cer(text, full.text) + 0.1, (fitted.text, full.text)


def test_fitted_and_full_windows_read_the_same_english(speech_maker: SpeechMaker, whisper_tiny_en: Any,
                                                       tiny_en_full: WhisperTranscriber) -> None:
    for text in ENGLISH:
        audio = padded(speech_maker.english(text).samples)
        fitted, full = whisper_tiny_en.transcribe(audio), tiny_en_full.transcribe(audio)
        assert fitted.window_frames < FULL_FRAMES and not fitted.is_fallback
        assert full.window_frames == FULL_FRAMES
        assert wer(full.text, fitted.text) <= 0.15, (fitted.text, full.text)
        assert wer(text, fitted.text) <= 0.15, fitted.text


def test_short_audio_gets_a_window_just_longer_than_itself(speech_maker: SpeechMaker, whisper_tiny_en: Any) -> None:
    audio = padded(speech_maker.english("Good morning.").samples)
    heard = whisper_tiny_en.transcribe(audio)
    frames = len(audio) / 160
    assert frames < heard.window_frames < FULL_FRAMES
    assert heard.window_frames == whisper_tiny_en.policy.frames(int(frames))
    assert "morning" in heard.text.lower()


def test_a_degenerate_fitted_result_is_redone_on_the_full_window(speech_maker: SpeechMaker) -> None:
    # Every decode has a log-probability below 0: with that as the floor every fitted result is degenerate.
    strict = WhisperTranscriber("offline:whisper-tiny.en", device="auto", language="en",
                                thresholds=Thresholds(avg_logprob=0.0))
    audio = padded(speech_maker.english(ENGLISH[0]).samples)
    heard = strict.transcribe(audio)
    assert heard.is_fallback and heard.window_frames == FULL_FRAMES
    assert "fallback" in strict.last_timings
    assert wer(ENGLISH[0], heard.text) <= 0.15, heard.text


def test_noise_is_redone_on_the_full_window_and_then_rejected(whisper_tiny_en: Any, whisper_base_ja: Any) -> None:
    noise = np.random.default_rng(3).normal(0, 0.02, 32000).astype(np.float32)
    guard = HallucinationGuard(no_speech_threshold=0.6)
    for model in (whisper_tiny_en, whisper_base_ja):
        heard = model.transcribe(noise)
        # The short window's reading of noise is not trusted: the full window decides, and the guard drops it.
        assert heard.is_fallback and heard.window_frames == FULL_FRAMES, heard
        assert guard.check_transcript(heard) is not None, heard


def test_degeneracy_names_each_bad_sign() -> None:
    good = Decoded(text="Turn on the lights.", language="en", language_probability=1.0, no_speech_prob=0.02,
                   avg_logprob=-0.2, compression_ratio=1.1, tokens=6, truncated=False, window_frames=400)
    assert degeneracy(good) is None
    cases = {"empty": {"text": " … "}, "budget": {"truncated": True}, "compression": {"compression_ratio": 3.0},
             "repeated": {"text": "ありがとうありがとうありがとうありがとう"}, "no-speech": {"no_speech_prob": 0.9},
             "log-probability": {"avg_logprob": -1.5}}
    for word, change in cases.items():
        fields = {**{f: getattr(good, f) for f in Decoded.__slots__}, **change}
        reason = degeneracy(Decoded(**fields))
        assert reason is not None and word in reason, (word, reason)
    assert not is_repetitive("はいはい、わかった。") and is_repetitive("the the the the the the")


def test_a_stale_job_stops_before_the_encoder(speech_maker: SpeechMaker, whisper_tiny_en: Any) -> None:
    audio = padded(speech_maker.english(ENGLISH[0]).samples)
    with pytest.raises(StaleTranscription):
        whisper_tiny_en.transcribe(audio, is_stale=lambda: True)
    assert "encode" not in whisper_tiny_en.last_timings


def test_a_job_gone_stale_during_the_encoder_stops_before_the_decoder(speech_maker: SpeechMaker,
                                                                      whisper_tiny_en: Any) -> None:
    audio = padded(speech_maker.english(ENGLISH[1]).samples)
    asked: list[bool] = []

    def stale_after_first_look() -> bool:
        asked.append(True)
        return len(asked) > 1

    with pytest.raises(StaleTranscription):
        whisper_tiny_en.transcribe(audio, is_stale=stale_after_first_look)
    assert len(asked) == 2
    assert "encode" in whisper_tiny_en.last_timings and "generate" not in whisper_tiny_en.last_timings
    # A job that never goes stale runs to its end.
    never: Callable[[], bool] = lambda: False  # noqa: E731
    assert wer(ENGLISH[1], whisper_tiny_en.transcribe(audio, is_stale=never).text) <= 0.15


def test_the_previous_segment_text_serves_as_prompt(speech_maker: SpeechMaker, whisper_base_ja: Any) -> None:
    audio = padded(speech_maker.japanese(JAPANESE[1]).samples)
    heard = whisper_base_ja.transcribe(audio, prompt="明日の天気はどうかな。")
    assert heard.language == "ja" and heard.window_frames < FULL_FRAMES
    assert cer(JAPANESE[1], heard.text) <= 0.3, heard.text


def test_a_forced_language_wins_over_the_configured_one(speech_maker: SpeechMaker, whisper_base_ja: Any) -> None:
    audio = padded(speech_maker.english(ENGLISH[0]).samples)
    heard = whisper_base_ja.transcribe(audio, language="en")
    assert heard.language == "en"
    assert wer(ENGLISH[0], heard.text) <= 0.2, heard.text


def test_detection_on_the_fitted_window_names_the_language(speech_maker: SpeechMaker) -> None:
    auto = WhisperTranscriber("offline:whisper-base", device="auto", language="auto")
    japanese = auto.transcribe(padded(speech_maker.japanese(JAPANESE[0]).samples))
    english = auto.transcribe(padded(speech_maker.english(ENGLISH[1]).samples))
    assert (japanese.language, english.language) == ("ja", "en")
    assert japanese.window_frames < FULL_FRAMES and english.window_frames < FULL_FRAMES
    assert cer(JAPANESE[0], japanese.text) <= 0.3, japanese.text


def test_on_a_cpu_one_decode_runs_at_a_time(whisper_tiny_en: Any) -> None:
    assert whisper_tiny_en.device == "cpu"
    assert whisper_tiny_en._model.model.num_workers == 1


def test_audio_over_30_seconds_takes_the_long_form_path(speech_maker: SpeechMaker, whisper_tiny_en: Any) -> None:
    clip = speech_maker.english(ENGLISH[0])
    audio = speech_maker.compose(0.5, clip, 28.0, clip, 0.5).samples
    heard = whisper_tiny_en.transcribe(audio)
    assert heard.window_frames == FULL_FRAMES and heard.duration_s > 30
    assert heard.text.lower().count("kitchen") == 2, heard.text


@pytest.mark.parametrize(("text", "expected"), [
    # A short window makes Whisper say the utterance again; the second time may break off.
    ("こんばんは、今日はちょっと疲れちゃった。こんばんは、今日はちょっと疲れ", ("こんばんは、今日はちょっと疲れちゃった。", 2)),
    ("Good morning. Good morning. Good mor", ("Good morning.", 3)),
    ("Yes. Yes. Yes. Yes.", ("Yes.", 4)),
    # What people do say stays whole.
    ("はいはい", ("はいはい", 1)),
    ("bye bye", ("bye bye", 1)),
    ("はい、そうですね。はい", ("はい、そうですね。はい", 1)),
])
def test_a_loop_is_cut_back_to_the_utterance(text: str, expected: tuple[str, int]) -> None:
    assert collapse_loop(text) == expected
