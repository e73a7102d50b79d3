"""SpeechStage: one Audio per sentence, in order, in the persona's voice and mode."""

from __future__ import annotations

import numpy as np

from assistant.config.schema import PersonaConfig, TtsConfig, VoiceConfig, VoiceStyle
from assistant.events import Audio, Error, Mode, StageTiming, Subtitle
from assistant.stage import run_stage
from assistant.tts.speech_stage import SpeechStage

SENTENCES = ["Good evening.", "The weather today is sunny and warm.", "Let us go for a walk in the park."]


async def test_one_audio_per_sentence_in_order(english_persona: PersonaConfig) -> None:
    stage = SpeechStage({"joe": english_persona}, TtsConfig(sentence_pause_ms=200))
    subtitles = [Subtitle(turn_id=3, persona="joe", sentence_index=i, text=t, language="en")
                 for i, t in enumerate(SENTENCES)]
    out = await run_stage(stage, subtitles)
    audios = [e for e in out if isinstance(e, Audio)]
    assert [a.sentence_index for a in audios] == [0, 1, 2]
    assert [a.text for a in audios] == SENTENCES
    assert all(a.turn_id == 3 and a.sample_rate == 22050 and a.samples.dtype == np.float32 for a in audios)
    assert audios[1].duration_s > audios[0].duration_s  # a longer sentence, longer audio
    timings = [e for e in out if isinstance(e, StageTiming)]
    assert len(timings) == 3 and all(t.stage == "tts" and t.turn_id == 3 and t.ms > 0 for t in timings)
    for audio in audios:
        assert len(audio.mouth) == -(-len(audio.samples) // int(audio.sample_rate * 0.02))
        pause = audio.samples[-int(0.2 * audio.sample_rate):]
        assert not pause.any()  # the sentence pause is appended as silence
        assert max(audio.mouth) > 0.5 and audio.mouth[-1] < 0.05


async def test_bedtime_mode_speaks_slower_quieter_with_longer_pauses(joe_voice_cfg: VoiceConfig) -> None:
    voice = joe_voice_cfg.model_copy(update={
        "bedtime": VoiceStyle(length_scale=1.5, volume=0.4, sentence_pause_ms=800)})
    persona = PersonaConfig(id="joe", display_name="Joe", language="en", system_prompt=".", voice=voice)
    text = "Sleep well and sweet dreams."
    events = [Subtitle(turn_id=1, persona="joe", sentence_index=0, text=text, language="en"),
              Mode(value="bedtime"),
              Subtitle(turn_id=2, persona="joe", sentence_index=0, text=text, language="en")]
    normal, bedtime = [e for e in await run_stage(SpeechStage({"joe": persona}, TtsConfig(sentence_pause_ms=100)), events)
                       if isinstance(e, Audio)]
    assert bedtime.duration_s > normal.duration_s + 0.7 + 0.2
    assert np.abs(bedtime.samples).max() <= 0.4 + 1e-6 < np.abs(normal.samples).max()
    assert not bedtime.samples[-int(0.8 * bedtime.sample_rate):].any()


async def test_a_sentence_in_another_language_uses_the_alternative_voice(
        tiny_vits_voice_cfg: VoiceConfig, joe_voice_cfg: VoiceConfig) -> None:
    persona = PersonaConfig(id="yuki", display_name="Yuki", language="ja", system_prompt=".",
                            voice=tiny_vits_voice_cfg, alt_voices={"en": joe_voice_cfg})
    out = await run_stage(SpeechStage({"yuki": persona}, TtsConfig()), [
        Subtitle(turn_id=1, persona="yuki", sentence_index=0, text="konbanwa.", language="ja"),
        Subtitle(turn_id=1, persona="yuki", sentence_index=1, text="Hello there.", language="en"),
        Subtitle(turn_id=1, persona="yuki", sentence_index=2, text="mata ne.", language="ja"),
    ])
    assert [a.sample_rate for a in out if isinstance(a, Audio)] == [16000, 22050, 16000]


async def test_a_voice_that_fails_is_reported_once_and_the_reply_goes_on(tmp_path) -> None:
    voice = VoiceConfig(backend="piper", voice=str(tmp_path / "missing.onnx"))
    persona = PersonaConfig(id="joe", display_name="Joe", language="en", system_prompt=".", voice=voice)
    out = await run_stage(SpeechStage({"joe": persona}, TtsConfig()), [
        Subtitle(turn_id=1, persona="joe", sentence_index=i, text="Hello.", language="en") for i in range(2)])
    errors = [e for e in out if isinstance(e, Error)]
    assert len(errors) == 1 and "missing.onnx" in errors[0].message and "\n" not in errors[0].message
    audios = [e for e in out if isinstance(e, Audio)]
    assert [a.sentence_index for a in audios] == [0, 1] and all(len(a.samples) == 0 for a in audios)


async def test_a_first_clause_is_followed_by_a_shorter_pause_than_a_sentence(english_persona: PersonaConfig) -> None:
    stage = SpeechStage({"joe": english_persona}, TtsConfig(sentence_pause_ms=400))
    chunks = ["Good evening,", "I'm so glad you had a nice day", "because you deserve it."]
    out = await run_stage(stage, [Subtitle(turn_id=1, persona="joe", sentence_index=i, text=t, language="en")
                                  for i, t in enumerate(chunks)])
    comma, words, sentence = [e for e in out if isinstance(e, Audio)]

    def trailing_silence_s(audio: Audio) -> float:
        voiced = np.flatnonzero(np.abs(audio.samples) > 1e-4)
        return (len(audio.samples) - voiced[-1] - 1) / audio.sample_rate

    assert trailing_silence_s(sentence) >= 0.4
    assert 0.2 <= trailing_silence_s(comma) < 0.4
    assert trailing_silence_s(words) < 0.2
