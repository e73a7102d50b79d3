"""A user who sounds sad at bedtime is comforted first, at once, and the scripted lines play with the LLM down.

The emotion is made deterministic by a tiny random wav2vec2 classifier whose bias forces "sad", loaded through
the real transformers emotion backend; the speech is real (Piper joe), recognised by real Whisper tiny.en."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from assistant.config.loader import Settings
from assistant.config.schema import BedtimeConfig, EmotionConfig, PersonaConfig
from assistant.events import (
    Audio,
    Error,
    Mode,
    PlaybackFinished,
    Subtitle,
    TurnDone,
    UserEmotion,
    UserSpeechEnded,
    UserTurnReady,
)
from assistant.speech.emotion import make_emotion_tagger
from assistant.speech.understand import UnderstandStage
from assistant.stage import run_stage
from tests.modes.conftest import UNREACHABLE_LLM, Night

RATE = 16000


async def sad_turn(make_emotion_model: Callable[..., Any], whisper_tiny_en: Any, speech_maker: Any,
                   settings: Settings, bedtime_cfg: BedtimeConfig) -> UserTurnReady:
    """Real speech through the real Understand stage, with the emotion model forced to hear sadness."""
    model_dir = make_emotion_model(force_label="sad")
    emotion_cfg = EmotionConfig(backend="transformers", model=str(model_dir), device="cpu",
                                label_map=settings.assistant.emotion.label_map)
    asr_cfg = settings.assistant.asr.model_copy(update={"language": "en", "speculative": False})
    stage = UnderstandStage(whisper_tiny_en, make_emotion_tagger(emotion_cfg), asr_cfg, emotion_cfg, bedtime_cfg)
    clip = speech_maker.english("I had a really hard day and I cannot sleep.")
    silence = np.zeros(int(0.3 * RATE), dtype=np.float32)
    audio = np.concatenate([silence, clip.samples, silence])
    out = await run_stage(stage, [Mode(value="bedtime"),
                                  UserSpeechEnded(turn_id=7, onset=0.0, speech_end=len(audio) / RATE,
                                                  decided_at=len(audio) / RATE, audio=audio)])
    emotions = [e for e in out if isinstance(e, UserEmotion)]
    ready = [e for e in out if isinstance(e, UserTurnReady)]
    assert len(emotions) == 1 and emotions[0].label == "sad" and emotions[0].score > 0.9
    assert len(ready) == 1 and ready[0].emotion == "sad"
    assert "sleep" in ready[0].text.lower()
    return ready[0]


async def test_a_sad_voice_hears_reassurance_first_and_at_once_with_the_engine_down(
        make_emotion_model: Callable[..., Any], whisper_tiny_en: Any, speech_maker: Any, shipped_settings: Settings,
        bedtime_cfg: BedtimeConfig, night: Callable[..., Night], night_persona: PersonaConfig) -> None:
    turn = await sad_turn(make_emotion_model, whisper_tiny_en, speech_maker, shipped_settings, bedtime_cfg)
    async with night(mode="bedtime", is_voiced=True) as n:
        await n.record.wait_for(Mode, lambda e: e.value == "bedtime")
        await n.pipeline.wait_idle()
        n.emit(turn)
        done = await n.record.wait_for(TurnDone, lambda e: e.turn_id == turn.turn_id)
    subtitles = [e for e in n.record.of(Subtitle) if e.turn_id == turn.turn_id]
    assert subtitles[0].text in night_persona.bedtime.reassurance and subtitles[0].is_scripted
    assert subtitles[0].sentence_index == 0
    # The reassurance was spoken (synthesised and played) although the engine never answered...
    spoken = {e.sentence_index for e in n.record.of(Audio) if e.turn_id == turn.turn_id}
    played = {e.sentence_index for e in n.record.of(PlaybackFinished) if e.turn_id == turn.turn_id}
    assert 0 in spoken and 0 in played
    # ...which it then tried, and the persona said so in its own words.
    errors = [e for e in n.record.of(Error) if e.turn_id == turn.turn_id]
    assert errors and "127.0.0.1:9" in errors[0].message and UNREACHABLE_LLM.startswith("http://127.0.0.1:9")
    assert subtitles[-1].text in night_persona.lines["engine_down"]
    assert done.spoken_text.startswith(subtitles[0].text)


async def test_good_night_is_spoken_without_the_llm(night: Callable[..., Night], night_persona: PersonaConfig) -> None:
    async with night(mode="bedtime", is_voiced=True) as n:
        await n.record.wait_for(Mode, lambda e: e.value == "bedtime")
        n.emit(UserTurnReady(turn_id=3, text="Good night.", language="en", emotion="calm", emotion_score=0.7))
        done = await n.record.wait_for(TurnDone, lambda e: e.turn_id == 3)
    assert done.spoken_text in night_persona.bedtime.good_night
    assert [e.turn_id for e in n.record.of(PlaybackFinished)] == [3]
    assert not n.record.of(Error)  # the engine was never asked
