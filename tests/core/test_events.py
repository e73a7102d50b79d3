"""Events: every type round-trips through JSON; audio travels as numpy with its rate."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from assistant.events import (
    EVENT_TYPES,
    SERVER_EVENT_TYPES,
    Audio,
    Latency,
    UserEmotion,
    UserSpeechEnded,
    event_from_json,
)

SAMPLE_VALUES = {
    "int": 3, "float": 0.25, "str": "こんにちは", "bool": True, "int | None": 4, "float | None": 1.5, "str | None": "x",
    "dict[str, float]": {"happy": 0.7, "sad": 0.3}, "tuple[float, ...]": (0.0, 0.5, 1.0),
    "tuple[str, ...]": ("今日は", "疲れた"),
}


def _sample(cls: type) -> object:
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("audio_json"):
            kwargs[f.name] = (np.sin(np.linspace(0, 40, 1600)) * 0.5).astype(np.float32)
            continue
        if f.metadata.get("internal"):
            continue  # for the stages only: not in JSON (tested below)
        kwargs[f.name] = 16000 if f.name == "sample_rate" else SAMPLE_VALUES[str(f.type)]
    return cls(**kwargs)


@pytest.mark.parametrize("type_name", sorted(EVENT_TYPES))
def test_every_event_round_trips(type_name: str) -> None:
    event = _sample(EVENT_TYPES[type_name])
    text = event.to_json(include_audio=True)
    assert json.loads(text)["type"] == type_name
    back = event_from_json(text)
    assert back == event
    for f in dataclasses.fields(event):
        if f.metadata.get("audio_json"):
            original, restored = getattr(event, f.name), getattr(back, f.name)
            assert restored.dtype == np.float32 and len(restored) == len(original)
            assert np.max(np.abs(restored - original)) < 1e-3


def test_audio_is_left_out_unless_asked_for() -> None:
    event = UserSpeechEnded(turn_id=1, audio=np.zeros(16000, dtype=np.float32))
    assert "wav" not in event.to_dict()
    assert "wav" in event.to_dict(include_audio=True)


def test_internal_fields_stay_out_of_json() -> None:
    event = UserSpeechEnded(turn_id=2, audio=np.zeros(3200, dtype=np.float32), segment_ids=(1, 2),
                            segment_starts=(0, 1600), merged_from=1)
    data = event.to_dict(include_audio=True)
    assert not {"segment_ids", "segment_starts", "merged_from"} & data.keys()


def test_protocol_names_from_the_design() -> None:
    for name in ("state", "speaker", "user-speech-started", "user-speech-ended", "user-transcript", "user-emotion",
                 "expression", "subtitle", "audio", "interrupted", "mode", "latency", "error"):
        assert name in SERVER_EVENT_TYPES
    assert "audio-frame" not in SERVER_EVENT_TYPES


def test_field_values_survive_json() -> None:
    emotion = UserEmotion(turn_id=2, label="sad", score=0.8, scores={"sad": 0.8, "neutral": 0.2})
    assert event_from_json(emotion.to_json()) == emotion
    latency = Latency(turn_id=2, stages_ms={"asr": 120.5}, voice_to_voice_ms=640.0)
    assert event_from_json(latency.to_json()) == latency
    audio = Audio(turn_id=1, sentence_index=0, sample_rate=22050, samples=np.zeros(10, np.float32), mouth=(0.1, 0.9))
    assert event_from_json(audio.to_json()).mouth == (0.1, 0.9)


def test_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        event_from_json('{"type": "nope"}')
