"""A spoken reply written to a WAV file and heard back by the real Whisper tiny.en matches the reply text."""

from __future__ import annotations

import wave
from collections.abc import Callable
from pathlib import Path

import pytest

from assistant.audio.output_stage import OutputStage
from assistant.audio.sinks import WavFileSink
from assistant.config.schema import PersonaConfig, TtsConfig
from assistant.events import Audio, Event, PlaybackStarted, Subtitle
from assistant.pipeline.runtime import Pipeline
from assistant.tts.speech_stage import SpeechStage
from tests.fixtures.voices import word_error_rate

REPLY = ["Good evening, it is nice to hear from you.", "The weather today is sunny and warm.",
         "Let us go for a walk in the park after dinner."]


async def test_a_reply_written_to_wav_is_transcribed_back_to_its_text(
        tmp_path: Path, english_persona: PersonaConfig, transcribe: Callable[[object], str]) -> None:
    path = tmp_path / "reply.wav"
    seen: list[Event] = []
    stages = [SpeechStage({"joe": english_persona}, TtsConfig()), OutputStage(WavFileSink(path, realtime=False))]
    async with Pipeline(stages) as pipeline:
        pipeline.bus.subscribe(seen.append)
        for i, sentence in enumerate(REPLY):
            pipeline.emit(Subtitle(turn_id=1, persona="joe", sentence_index=i, text=sentence, language="en"))
        await pipeline.wait_idle()
    assert [e.sentence_index for e in seen if isinstance(e, Audio)] == [0, 1, 2]
    assert [e.sentence_index for e in seen if isinstance(e, PlaybackStarted)] == [0, 1, 2]
    with wave.open(str(path), "rb") as written:
        duration = written.getnframes() / written.getframerate()
    assert duration == pytest.approx(sum(e.duration_s for e in seen if isinstance(e, Audio)))
    heard = transcribe(path)
    print("heard:", heard)
    assert word_error_rate(" ".join(REPLY), heard) <= 0.2, heard
