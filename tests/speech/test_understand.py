"""The Understand stage with real Whisper and real taggers, alone and at the end of the speech-in pipeline."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.audio.sources import WavSource
from assistant.audio.vad import VadStage
from assistant.bench.speech_in import VoiceToTurns
from assistant.config.loader import load_settings
from assistant.config.schema import CANONICAL_EMOTIONS, AsrConfig, BedtimeConfig, EmotionConfig, VadConfig
from assistant.events import (
    Event,
    Mode,
    StageTiming,
    TurnDropped,
    UserEmotion,
    UserSpeechEnded,
    UserSpeechPaused,
    UserTranscript,
    UserTurnReady,
)
from assistant.pipeline.bus import Bus
from assistant.pipeline.runtime import Pipeline
from assistant.pipeline.stage import run_stage
from assistant.speech.emotion_prosody import ProsodyEmotionTagger
from assistant.speech.emotion_transformers import TransformersEmotionTagger
from assistant.speech.understand import UnderstandStage
from tests.fixtures.speech import SpeechMaker, cer, wer

RATE = 16000


@pytest.fixture(scope="module")
def asr_en() -> AsrConfig:
    shipped = load_settings().assistant.asr
    return shipped.model_copy(update={"model": "offline:whisper-tiny.en", "language": "en"})


@pytest.fixture(scope="module")
def happy_tagger(make_emotion_model: Callable[..., Path]) -> TransformersEmotionTagger:
    tagger = TransformersEmotionTagger(str(make_emotion_model(force_label="hap")), device="cpu")
    tagger.load()
    return tagger


@pytest.fixture(scope="module")
def emotion_cfg(emotion_label_map: dict[str, str]) -> EmotionConfig:
    return EmotionConfig(backend="transformers", label_map=emotion_label_map, threshold=0.4)


class CountingTranscriber:
    """The real transcriber, counting how often it is asked (to see speculative results reused)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lengths: list[int] = []

    def load(self) -> None:
        self.inner.load()

    def transcribe(self, audio: np.ndarray) -> Any:
        self.lengths.append(len(audio))
        return self.inner.transcribe(audio)


class BrokenTagger:
    """An emotion model that fails at run time."""

    def load(self) -> None:
        pass

    def scores(self, audio: np.ndarray) -> dict[str, float]:
        raise RuntimeError("out of memory")


def kinds(events: list[Event]) -> list[type]:
    """The event types, leaving out 'asr_wait' timings (reported only when the ASR worker was busy)."""
    return [type(e) for e in events if not (isinstance(e, StageTiming) and e.stage == "asr_wait")]


def ended(turn_id: int, audio: np.ndarray, speech_end: float = 50.0) -> UserSpeechEnded:
    return UserSpeechEnded(turn_id=turn_id, onset=speech_end - len(audio) / RATE, speech_end=speech_end,
                           decided_at=speech_end + 0.3, audio=audio)


async def test_an_utterance_becomes_transcript_emotion_timings_and_a_ready_turn(
        speech_maker: SpeechMaker, whisper_tiny_en: Any, happy_tagger: Any, asr_en: AsrConfig,
        emotion_cfg: EmotionConfig) -> None:
    text = "Could you play some quiet music?"
    audio = speech_maker.compose(0.3, speech_maker.english(text), 0.3).samples
    stage = UnderstandStage(whisper_tiny_en, happy_tagger, asr_en, emotion_cfg)
    out = await run_stage(stage, [ended(3, audio, speech_end=123.0)])
    assert kinds(out) == [UserTranscript, StageTiming, UserEmotion, StageTiming, UserTurnReady]
    transcript, asr_timing, emotion, emotion_timing, ready = [e for e in out if getattr(e, "stage", "") != "asr_wait"]
    assert transcript.turn_id == emotion.turn_id == ready.turn_id == 3
    assert wer(text, transcript.text) <= 0.15 and transcript.language == "en"
    assert (emotion.label, emotion.score > 0.9) == ("happy", True)
    assert set(emotion.scores) <= set(CANONICAL_EMOTIONS)
    assert (asr_timing.stage, emotion_timing.stage) == ("asr", "emotion")
    # ASR and emotion run at the same time, each on its own worker.
    assert emotion_timing.started_at < asr_timing.ended_at
    assert ready.text == transcript.text and ready.emotion == "happy" and ready.speech_end == 123.0


@pytest.mark.parametrize(("language", "text"), [("en", "Thanks for watching!"), ("ja", "ご視聴ありがとうございました。")])
async def test_a_phantom_phrase_gives_turn_dropped_and_nothing_else(
        speech_maker: SpeechMaker, whisper_tiny_en: Any, whisper_base_ja: Any, happy_tagger: Any,
        asr_en: AsrConfig, emotion_cfg: EmotionConfig, language: str, text: str) -> None:
    if language == "en":
        clip, transcriber, cfg = speech_maker.english(text), whisper_tiny_en, asr_en
    else:
        clip, transcriber = speech_maker.japanese(text), whisper_base_ja
        cfg = asr_en.model_copy(update={"language": "ja"})
    stage = UnderstandStage(transcriber, happy_tagger, cfg, emotion_cfg)
    out = await run_stage(stage, [ended(5, speech_maker.compose(0.3, clip, 0.3).samples)])
    assert kinds(out) == [TurnDropped]
    assert out[0].turn_id == 5 and "phantom" in out[0].reason


async def test_silence_and_noise_give_no_turn(whisper_tiny_en: Any, asr_en: AsrConfig,
                                              emotion_cfg: EmotionConfig) -> None:
    stage = UnderstandStage(whisper_tiny_en, ProsodyEmotionTagger(), asr_en, emotion_cfg)
    silence = np.zeros(RATE, np.float32)
    noise = np.random.default_rng(7).normal(0, 0.02, 2 * RATE).astype(np.float32)
    out = await run_stage(stage, [ended(1, silence), ended(2, noise)])
    assert kinds(out) == [TurnDropped, TurnDropped]
    assert "quiet" in out[0].reason


async def test_bedtime_lets_whispers_through_the_rms_gate(speech_maker: SpeechMaker, whisper_tiny_en: Any,
                                                          asr_en: AsrConfig, emotion_cfg: EmotionConfig) -> None:
    clip = speech_maker.english("Good night.")
    quiet = speech_maker.compose(0.2, clip, 0.2).samples
    quiet = quiet * (0.003 / float(np.sqrt(np.mean(quiet ** 2))))  # under the normal gate (0.004)
    stage = UnderstandStage(whisper_tiny_en, None, asr_en, emotion_cfg, BedtimeConfig(rms_gate=0.002))
    out = await run_stage(stage, [ended(1, quiet), Mode(value="bedtime"), ended(2, quiet),
                                  Mode(value="normal"), ended(3, quiet)])
    assert [(type(e).__name__, e.turn_id) for e in out if isinstance(e, TurnDropped | UserTurnReady)] == \
        [("TurnDropped", 1), ("UserTurnReady", 2), ("TurnDropped", 3)]


async def test_speculative_transcript_is_reused_when_the_audio_is_the_same(
        speech_maker: SpeechMaker, whisper_tiny_en: Any, asr_en: AsrConfig, emotion_cfg: EmotionConfig) -> None:
    audio = speech_maker.compose(0.3, speech_maker.english("Set a timer for ten minutes."), 0.2).samples
    counting = CountingTranscriber(whisper_tiny_en)
    stage = UnderstandStage(counting, ProsodyEmotionTagger(), asr_en, emotion_cfg)
    paused = UserSpeechPaused(turn_id=4, pause_start=10.0, audio=audio)
    out = await run_stage(stage, [paused, ended(4, audio)])
    assert counting.lengths == [len(audio)]
    assert stage.speculative_hits == 1
    assert kinds(out) == [UserTranscript, StageTiming, UserEmotion, StageTiming, UserTurnReady]
    assert wer("Set a timer for ten minutes.", out[0].text) <= 0.2


async def test_speculative_transcript_is_discarded_when_speech_resumed(
        speech_maker: SpeechMaker, whisper_tiny_en: Any, asr_en: AsrConfig, emotion_cfg: EmotionConfig) -> None:
    first = speech_maker.compose(0.3, speech_maker.english("Set a timer"), 0.2).samples
    whole = np.concatenate([first, speech_maker.compose(speech_maker.english("for ten minutes."), 0.2).samples])
    counting = CountingTranscriber(whisper_tiny_en)
    stage = UnderstandStage(counting, None, asr_en, emotion_cfg)
    out = await run_stage(stage, [UserSpeechPaused(turn_id=4, pause_start=10.0, audio=first), ended(4, whole)])
    assert stage.speculative_hits == 0
    assert len(whole) in counting.lengths
    ready = [e for e in out if isinstance(e, UserTurnReady)]
    assert len(ready) == 1 and wer("Set a timer for ten minutes.", ready[0].text) <= 0.2
    assert not any(isinstance(e, UserEmotion) for e in out)


async def test_speculation_off_ignores_pauses(speech_maker: SpeechMaker, whisper_tiny_en: Any, asr_en: AsrConfig,
                                              emotion_cfg: EmotionConfig) -> None:
    audio = speech_maker.compose(0.3, speech_maker.english("Hello."), 0.2).samples
    counting = CountingTranscriber(whisper_tiny_en)
    stage = UnderstandStage(counting, None, asr_en.model_copy(update={"speculative": False}), emotion_cfg)
    await run_stage(stage, [UserSpeechPaused(turn_id=1, pause_start=1.0, audio=audio)])
    assert counting.lengths == []


async def test_a_failing_tagger_is_a_warning_and_the_turn_goes_on(
        speech_maker: SpeechMaker, whisper_tiny_en: Any, asr_en: AsrConfig, emotion_cfg: EmotionConfig,
        caplog: pytest.LogCaptureFixture) -> None:
    audio = speech_maker.compose(0.3, speech_maker.english("What time is it?"), 0.2).samples
    stage = UnderstandStage(whisper_tiny_en, BrokenTagger(), asr_en, emotion_cfg)
    with caplog.at_level(logging.WARNING):
        out = await run_stage(stage, [ended(9, audio)])
    assert kinds(out) == [UserTranscript, StageTiming, UserTurnReady]
    assert out[-1].emotion is None
    assert any("emotion" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


async def test_an_emotion_model_that_cannot_load_turns_emotion_off(
        speech_maker: SpeechMaker, whisper_tiny_en: Any, asr_en: AsrConfig, emotion_cfg: EmotionConfig,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    stage = UnderstandStage(whisper_tiny_en, TransformersEmotionTagger(str(broken)), asr_en, emotion_cfg)
    audio = speech_maker.compose(0.3, speech_maker.english("Hello there."), 0.2).samples
    with caplog.at_level(logging.WARNING):
        out = await run_stage(stage, [ended(1, audio)])
    assert stage.tagger is None
    assert kinds(out) == [UserTranscript, StageTiming, UserTurnReady]
    assert any("emotion tagging is off" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------------
# The whole speech-in path over a WAV file
# ------------------------------------------------------------------------------------------------


async def run_file(path: Path, transcriber: Any, tagger: Any, asr: AsrConfig, emotion: EmotionConfig) -> list[Event]:
    bus = Bus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    stages = [WavSource(path, realtime=False), VadStage(VadConfig()), VoiceToTurns(),
              UnderstandStage(transcriber, tagger, asr, emotion)]
    async with Pipeline(stages, bus) as pipeline:
        await pipeline.wait_runners()
        await pipeline.wait_idle()
    return seen


async def test_a_wav_with_three_utterances_gives_three_turns_in_order(
        speech_maker: SpeechMaker, speech_dir: Path, whisper_tiny_en: Any, asr_en: AsrConfig,
        emotion_cfg: EmotionConfig) -> None:
    texts = ["Good morning to you.", "What is on my calendar today?", "Thanks, that is all for now."]
    audio = speech_maker.compose(0.6, *(p for t in texts for p in (speech_maker.english(t), 1.0)))
    path = audio.write(speech_dir / "three-en.wav", rate=22050)
    seen = await run_file(path, whisper_tiny_en, ProsodyEmotionTagger(), asr_en, emotion_cfg)
    ready = [e for e in seen if isinstance(e, UserTurnReady)]
    assert [e.turn_id for e in ready] == [1, 2, 3]
    for turn, text in zip(ready, texts, strict=True):
        assert wer(text, turn.text) <= 0.2, turn.text
        assert turn.emotion in CANONICAL_EMOTIONS
    assert len([e for e in seen if isinstance(e, UserEmotion)]) == 3


async def test_a_japanese_wav_gives_transcripts_and_emotions(
        speech_maker: SpeechMaker, speech_dir: Path, whisper_base_ja: Any, asr_en: AsrConfig,
        emotion_cfg: EmotionConfig) -> None:
    texts = ["こんばんは、今日もお疲れ様。", "明日の天気はどうかな。"]
    audio = speech_maker.compose(0.5, speech_maker.japanese(texts[0]), 1.0, speech_maker.japanese(texts[1]), 0.8)
    path = audio.write(speech_dir / "two-ja.wav", rate=24000)
    asr_ja = asr_en.model_copy(update={"model": "offline:whisper-base", "language": "ja"})
    seen = await run_file(path, whisper_base_ja, ProsodyEmotionTagger(), asr_ja, emotion_cfg)
    transcripts = [e for e in seen if isinstance(e, UserTranscript)]
    emotions = [e for e in seen if isinstance(e, UserEmotion)]
    assert [e.turn_id for e in transcripts] == [e.turn_id for e in emotions] == [1, 2]
    for transcript, text in zip(transcripts, texts, strict=True):
        assert cer(text, transcript.text) <= 0.3, transcript.text
        assert transcript.language == "ja"
    assert all(e.label in CANONICAL_EMOTIONS for e in emotions)


async def test_a_wav_of_silence_and_noise_gives_no_turn(speech_dir: Path, whisper_tiny_en: Any, asr_en: AsrConfig,
                                                        emotion_cfg: EmotionConfig) -> None:
    rng = np.random.default_rng(11)
    noise = np.concatenate([np.zeros(RATE, np.float32), rng.normal(0, 0.01, 3 * RATE).astype(np.float32),
                            np.zeros(RATE, np.float32), rng.normal(0, 0.05, RATE // 2).astype(np.float32),
                            np.zeros(RATE, np.float32)])
    from assistant.audio.wavfile import write_wav

    path = write_wav(speech_dir / "noise.wav", noise, RATE)
    seen = await run_file(path, whisper_tiny_en, ProsodyEmotionTagger(), asr_en, emotion_cfg)
    assert not [e for e in seen if isinstance(e, UserTranscript | UserTurnReady | UserEmotion)]
