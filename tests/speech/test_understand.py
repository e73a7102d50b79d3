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
    SegmentTranscript,
    StageTiming,
    TurnDropped,
    UserEmotion,
    UserSpeechEnded,
    UserSpeechPaused,
    UserTranscript,
    UserTurnReady,
    VoiceProbe,
    VoiceResumed,
)
from assistant.pipeline.bus import Bus
from assistant.pipeline.runtime import Pipeline
from assistant.speech.emotion_prosody import ProsodyEmotionTagger
from assistant.speech.emotion_transformers import TransformersEmotionTagger
from assistant.speech.understand import UnderstandStage
from assistant.stage import run_stage as run_stage_raw
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
        self.options: list[dict[str, Any]] = []

    def load(self) -> None:
        self.inner.load()

    def transcribe(self, audio: np.ndarray, **options: Any) -> Any:
        self.lengths.append(len(audio))
        self.options.append(options)
        return self.inner.transcribe(audio, **options)

    def __getattr__(self, name: str) -> Any:  # detect_language, last_timings...: the real one's
        return getattr(self.inner, name)


class BrokenTagger:
    """An emotion model that fails at run time."""

    def load(self) -> None:
        pass

    def scores(self, audio: np.ndarray) -> dict[str, float]:
        raise RuntimeError("out of memory")


async def run_stage(stage: UnderstandStage, events: list[Event]) -> list[Event]:
    """What the stage said about turns (the per-segment SegmentTranscript announcements are for the turn
    controller; ``segment_words`` collects them)."""
    out = await run_stage_raw(stage, events)
    return [e for e in out if not isinstance(e, SegmentTranscript)]


async def segment_words(stage: UnderstandStage, events: list[Event]) -> list[SegmentTranscript]:
    return [e for e in await run_stage_raw(stage, events) if isinstance(e, SegmentTranscript)]


def kinds(events: list[Event]) -> list[type]:
    """The turn's event types, leaving out 'asr_wait' timings (reported only when the ASR worker was busy) and
    the per-segment SegmentTranscript announcements (for the turn controller, tested on their own)."""
    return [type(e) for e in events
            if not (isinstance(e, StageTiming) and e.stage == "asr_wait") and not isinstance(e, SegmentTranscript)]


def ended(turn_id: int, audio: np.ndarray, speech_end: float = 50.0, segment: int | None = None) -> UserSpeechEnded:
    """The end of a one-segment turn (the segment is turn_id's unless told)."""
    return UserSpeechEnded(turn_id=turn_id, onset=speech_end - len(audio) / RATE, speech_end=speech_end,
                           decided_at=speech_end + 0.3, audio=audio, segment_ids=(segment or turn_id,),
                           segment_starts=(0,))


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
    assert (emotion.label, emotion.score > 0.9, emotion.is_calibrated) == ("happy", True, True)
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
    paused = UserSpeechPaused(turn_id=4, pause_start=10.0, audio=audio, segment_id=4, pause_id=1)
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
    out = await run_stage(stage, [UserSpeechPaused(turn_id=4, pause_start=10.0, audio=first, segment_id=4, pause_id=1), ended(4, whole)])
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
    await run_stage(stage, [UserSpeechPaused(turn_id=1, pause_start=1.0, audio=audio, segment_id=1, pause_id=1)])
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


@pytest.fixture(scope="module")
def whisper_base_auto() -> Any:
    """Whisper base finding each utterance's language itself."""
    from assistant.speech.whisper import WhisperTranscriber

    transcriber = WhisperTranscriber("offline:whisper-base", device="auto", language="auto")
    transcriber.load()
    return transcriber


async def test_a_merged_turn_joins_each_segments_own_words_in_its_own_language(
        speech_maker: SpeechMaker, whisper_base_auto: Any, asr_en: AsrConfig, emotion_cfg: EmotionConfig) -> None:
    ja_text, en_text = "今日はちょっと疲れちゃった。", "Could you play some quiet music?"
    first = speech_maker.compose(0.3, speech_maker.japanese(ja_text), 0.1).samples
    second = speech_maker.compose(0.3, speech_maker.english(en_text), 0.1).samples
    counting = CountingTranscriber(whisper_base_auto)
    stage = UnderstandStage(counting, ProsodyEmotionTagger(), asr_en.model_copy(update={"language": "auto"}),
                            emotion_cfg)
    merged = UserSpeechEnded(turn_id=2, speech_end=60.0, audio=np.concatenate([first, second]),
                             segment_ids=(1, 2), segment_starts=(0, len(first)), merged_from=1)
    out = await run_stage_raw(stage, [
        UserSpeechPaused(turn_id=1, pause_start=50.0, audio=first, segment_id=1, pause_id=1),
        UserSpeechPaused(turn_id=2, pause_start=60.0, audio=second, segment_id=2, pause_id=2, previous_segment=1),
        merged])
    # Each segment was recognised once, at its pause; the merged audio never.
    assert counting.lengths == [len(first), len(second)]
    assert stage.speculative_hits == 2
    words = {e.segment_id: e for e in out if isinstance(e, SegmentTranscript)}
    assert words[1].language == "ja" and words[2].language == "en"
    assert words[1].pause_id == 1 and words[2].pause_id == 2
    assert counting.options[1]["prompt"] == words[1].text  # the first segment's words prompt the second
    ready = next(e for e in out if isinstance(e, UserTurnReady))
    transcript = next(e for e in out if isinstance(e, UserTranscript))
    assert ready.parts == (words[1].text, words[2].text) and ready.merged_from == 1
    assert transcript.text == ready.text and transcript.text.startswith(words[1].text)
    assert cer(ja_text, ready.parts[0]) <= 0.3 and wer(en_text, ready.parts[1]) <= 0.3


class GivingUp:
    """The real transcriber; records which calls gave up at a boundary because their audio went stale."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[int, str]] = []

    def load(self) -> None:
        self.inner.load()

    def transcribe(self, audio: np.ndarray, **options: Any) -> Any:
        from assistant.speech.transcriber import StaleTranscription

        try:
            result = self.inner.transcribe(audio, **options)
        except StaleTranscription:
            self.calls.append((len(audio), "gave up"))
            raise
        self.calls.append((len(audio), "done"))
        return result


async def test_a_recognition_made_stale_by_resumed_speech_is_given_up_at_a_boundary(
        speech_maker: SpeechMaker, whisper_tiny_en: Any, asr_en: AsrConfig, emotion_cfg: EmotionConfig) -> None:
    first = speech_maker.compose(0.3, speech_maker.english("Set a timer"), 0.1).samples
    whole = np.concatenate([first, speech_maker.compose(speech_maker.english("for ten minutes."), 0.1).samples])
    giving_up = GivingUp(whisper_tiny_en)
    stage = UnderstandStage(giving_up, None, asr_en, emotion_cfg)
    out = await run_stage_raw(stage, [
        UserSpeechPaused(turn_id=1, pause_start=10.0, audio=first, segment_id=1, pause_id=1),
        VoiceResumed(onset=9.0, at=10.2, segment_id=1),
        UserSpeechPaused(turn_id=1, pause_start=11.0, audio=whole, segment_id=1, pause_id=2),
        ended(1, whole, segment=1)])
    # The stale job never ran to its end: dropped before it started, or given up between encoder and decoder.
    assert (len(first), "done") not in giving_up.calls
    assert giving_up.calls[-1] == (len(whole), "done") and stage.stale_jobs == 1
    # Only the words of the live pause were announced; the turn heard the whole sentence.
    assert [(e.pause_id, e.is_speech) for e in out if isinstance(e, SegmentTranscript)] == [(2, True)]
    ready = next(e for e in out if isinstance(e, UserTurnReady))
    assert wer("Set a timer for ten minutes.", ready.text) <= 0.2 and stage.speculative_hits == 1


async def test_a_segment_heard_as_english_early_is_written_by_the_english_model(
        speech_maker: SpeechMaker, speech_dir: Path, whisper_tiny_en: Any, asr_en: AsrConfig,
        emotion_cfg: EmotionConfig) -> None:
    """With ``asr.english_model``: the VAD probes each segment's first second, whisper-base's encoder guesses
    its language while the user goes on, and at the pause English words come from tiny.en alone (no
    whisper-base decode), Japanese ones from whisper-base told the language."""
    from assistant.speech.whisper import WhisperTranscriber

    ja_text, en_text = "今日はちょっと疲れちゃったけど、元気だよ。", "Could you play some quiet music for me tonight?"
    audio = speech_maker.compose(0.5, speech_maker.japanese(ja_text), 1.5, speech_maker.english(en_text), 1.5)
    path = audio.write(speech_dir / "probe-ja-en.wav", rate=24000)
    english = CountingTranscriber(whisper_tiny_en)
    base = WhisperTranscriber("offline:whisper-base", device="auto", language="auto",
                              english=english)  # type: ignore[arg-type]
    counting = CountingTranscriber(base)
    asr = asr_en.model_copy(update={"model": "offline:whisper-base", "language": "auto",
                                    "english_model": "offline:whisper-tiny.en"})
    bus = Bus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    stages = [WavSource(path, realtime=False), VadStage(VadConfig(), probe_language=True), VoiceToTurns(),
              UnderstandStage(counting, ProsodyEmotionTagger(), asr, emotion_cfg)]
    async with Pipeline(stages, bus) as pipeline:
        await pipeline.wait_runners()
        await pipeline.wait_idle()
    probes = [e for e in seen if isinstance(e, VoiceProbe)]
    assert [p.segment_id for p in probes] == [1, 2]
    assert all(len(p.audio) >= VadConfig().language_probe_ms * RATE // 1000 for p in probes)
    transcripts = [e for e in seen if isinstance(e, UserTranscript)]
    assert [t.language for t in transcripts] == ["ja", "en"], transcripts
    assert cer(ja_text, transcripts[0].text) <= 0.3 and wer(en_text, transcripts[1].text) <= 0.3
    # Each segment recognised in the language its probe heard: the English one by tiny.en alone.
    assert [o["language"] for o in counting.options] == ["ja", "en"]
    assert len(english.lengths) == 1 and "english_generate" in base.last_timings


class SureItIsEnglish(CountingTranscriber):
    """The real transcriber whose early language guess is always a sure "en" (and is counted)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.guesses = 0

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        self.guesses += 1
        return "en", 1.0


async def test_a_configured_language_is_not_second_guessed_by_the_probe(
        speech_maker: SpeechMaker, whisper_tiny_en: Any, asr_en: AsrConfig, emotion_cfg: EmotionConfig) -> None:
    """``asr.language: ja`` is what the user chose: a probe that hears English changes neither the language
    nor the model of the segment's recognition."""
    audio = speech_maker.compose(0.3, speech_maker.english("Could you play some quiet music?"), 0.3).samples
    counting = SureItIsEnglish(whisper_tiny_en)
    asr = asr_en.model_copy(update={"language": "ja", "english_model": "offline:whisper-tiny.en"})
    stage = UnderstandStage(counting, ProsodyEmotionTagger(), asr, emotion_cfg)
    probe = VoiceProbe(onset=49.0, audio=audio[:RATE], segment_id=3)
    out = await run_stage(stage, [probe, ended(3, audio)])
    assert [type(e) for e in out if isinstance(e, UserTranscript)] == [UserTranscript]
    assert counting.guesses == 0 and [o.get("language") for o in counting.options] == [None]
