"""The page protocol on its own: parsing page messages, the schemas, and docs/protocol.md in step with both."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from assistant.events import (
    SERVER_EVENT_TYPES,
    Audio,
    AudioFrame,
    Error,
    Expression,
    InputEnded,
    InterruptRequest,
    Latency,
    Mode,
    Notice,
    PlaybackFinished,
    PlaybackStarted,
    SetMode,
    SetPersona,
    Speaker,
    State,
    Subtitle,
    TextInput,
    TurnDropped,
    UserEmotion,
    UserSpeechEnded,
    UserSpeechStarted,
    UserTranscript,
)
from live2d_bridge import protocol
from live2d_bridge.protocol import ProtocolError, page_event, parse_page_message
from tests.fixtures.bridge import ROOT, load_schemas

LIMIT = 256 * 1024


def pcm_b64(samples: np.ndarray) -> str:
    return base64.b64encode((samples * 32767).astype("<i2").tobytes()).decode()


def parse(message: object) -> protocol.PageMessage:
    return parse_page_message(json.dumps(message), LIMIT)


def test_each_page_message_becomes_its_event() -> None:
    tone = np.sin(np.arange(640) / 16000 * 2 * np.pi * 440).astype(np.float32) * 0.5
    cases = [
        ({"type": "text-input", "text": "  こんばんは "}, TextInput(text="こんばんは")),
        ({"type": "mic-end"}, InputEnded(is_final=False)),
        ({"type": "interrupt"}, InterruptRequest()),
        ({"type": "set-persona", "persona": "miyu"}, SetPersona(persona="miyu")),
        ({"type": "set-mode", "value": "bedtime"}, SetMode(value="bedtime")),
    ]
    for message, expected in cases:
        assert page_event(parse(message)) == expected
    frame = page_event(parse({"type": "mic-audio", "pcm": pcm_b64(tone), "id": "c1"}))
    assert isinstance(frame, AudioFrame)
    assert frame.sample_rate == 16000 and frame.samples.dtype == np.float32 and len(frame.samples) == 640
    assert np.max(np.abs(frame.samples - tone)) < 1e-4
    assert frame.timestamp > 0
    started = page_event(parse({"type": "playback-started", "turn_id": 4, "sentence_index": 1, "level": 0.2}))
    assert isinstance(started, PlaybackStarted)
    assert (started.turn_id, started.sentence_index, started.level) == (4, 1, 0.2) and started.at > 0
    finished = page_event(parse({"type": "playback-finished", "turn_id": 4, "sentence_index": 1, "played_s": 1.25}))
    assert isinstance(finished, PlaybackFinished) and finished.played_s == 1.25
    assert page_event(parse({"type": "ping", "id": 9})) is None


@pytest.mark.parametrize(("raw", "code"), [
    ("not json", "bad-json"),
    ("[1, 2]", "not-object"),
    ('"text"', "not-object"),
    ("{}", "missing-type"),
    ('{"type": 5}', "missing-type"),
    ('{"type": "launch-missiles"}', "unknown-type"),
    ('{"type": "text-input"}', "bad-field"),
    ('{"type": "text-input", "text": "   "}', "bad-field"),
    ('{"type": "text-input", "text": 5}', "bad-field"),
    ('{"type": "text-input", "text": "hi", "extra": 1}', "unknown-field"),
    ('{"type": "set-mode", "value": "party"}', "bad-field"),
    ('{"type": "set-persona", "persona": ""}', "bad-field"),
    ('{"type": "mic-audio", "pcm": "not base64!"}', "bad-field"),
    ('{"type": "mic-audio", "pcm": "AA=="}', "bad-field"),
    ('{"type": "mic-audio", "pcm": ""}', "bad-field"),
    ('{"type": "playback-started", "turn_id": -1, "sentence_index": 0}', "bad-field"),
    ('{"type": "playback-started", "turn_id": true, "sentence_index": 0}', "bad-field"),
    ('{"type": "playback-finished", "turn_id": 1, "sentence_index": 0, "played_s": NaN}', "bad-json"),
    ('{"type": "playback-finished", "turn_id": 1, "sentence_index": 0, "played_s": -2}', "bad-field"),
    ('{"type": "ping", "id": {"a": 1}}', "bad-field"),
    ("[" * 100000, "bad-json"),
])
def test_malformed_messages_are_refused_with_a_code_and_one_line(raw: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_page_message(raw, LIMIT)
    assert info.value.code == code
    assert "\n" not in info.value.message and 0 < len(info.value.message) < 300


def test_size_and_binary_limits() -> None:
    big = json.dumps({"type": "text-input", "text": "あ" * 1000})
    with pytest.raises(ProtocolError) as info:
        parse_page_message(big, 2000)  # 3000+ bytes in UTF-8
    assert info.value.code == "too-large"
    with pytest.raises(ProtocolError) as info:
        parse_page_message(b'{"type": "ping"}', LIMIT)
    assert info.value.code == "binary"


def test_the_id_of_a_bad_message_comes_back() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_page_message('{"type": "set-mode", "value": "x", "id": "m-7"}', LIMIT)
    assert info.value.message_id == "m-7"


# ------------------------------------------------------------------------------------------------ schemas


def test_every_message_type_has_a_schema_and_examples_that_pass() -> None:
    schemas = load_schemas()
    server_types = {k for k, s in schemas.items() if s["x-direction"] == "server-to-page"}
    page_types = {k for k, s in schemas.items() if s["x-direction"] == "page-to-server"}
    assert set(SERVER_EVENT_TYPES) <= server_types, f"events without a schema: {set(SERVER_EVENT_TYPES) - server_types}"
    assert server_types == set(protocol.SERVER_MESSAGE_TYPES)
    assert page_types == set(protocol.PAGE_MESSAGE_TYPES)
    for kind, schema in schemas.items():
        Draft202012Validator.check_schema(schema)
        assert schema["properties"]["type"] == {"const": kind}
        validator = Draft202012Validator(schema)
        for example in schema["examples"]:
            errors = list(validator.iter_errors(example))
            assert not errors, f"{kind} example: {errors[0].message}"
            if kind in page_types:
                parse(example)  # the server accepts the documented example


def test_events_serialise_to_their_schemas() -> None:
    """One of every server event, as the pipeline makes them, is valid as sent to pages."""
    tone = np.sin(np.arange(2400) / 24000 * 2 * np.pi * 220).astype(np.float32)
    events = [
        State(value="speaking"), Speaker(persona="yuuri", display_name="悠璃"), Mode(value="bedtime"),
        UserSpeechStarted(turn_id=1, onset=10.5),
        UserSpeechEnded(turn_id=1, onset=10.5, speech_end=12.0, decided_at=12.3, audio=tone),
        UserTranscript(turn_id=1, text="ねむい", language="ja"),
        UserEmotion(turn_id=1, label="calm", score=0.8, scores={"calm": 0.8, "sad": 0.2}),
        Expression(persona="yuuri", name="joy"), Expression(persona="yuuri", name="sad", turn_id=1),
        Subtitle(turn_id=1, persona="yuuri", sentence_index=0, text="おやすみなさい。"),
        Audio(turn_id=1, sentence_index=0, sample_rate=24000, samples=tone, mouth=(0.0, 0.5, 1.0), text="x"),
        Latency(turn_id=1, stages_ms={"asr": 100.0}, voice_to_voice_ms=None),
        Latency(turn_id=1, stages_ms={}, voice_to_voice_ms=640.0),
        Notice(message="starting"), Error(message="boom", turn_id=2), TurnDropped(turn_id=4, reason="too short"),
        UserEmotion(turn_id=2, label="tired", score=0.5, scores={"tired": 0.5, "neutral": 0.5}, is_calibrated=False),
    ]
    from live2d_bridge.protocol import event_message
    schemas = load_schemas()
    for event in events:
        for include_audio in (False, True):
            message = json.loads(protocol.encode(event_message(event, include_audio=include_audio)))
            errors = list(Draft202012Validator(schemas[event.type]).iter_errors(message))
            assert not errors, f"{event.type}: {errors[0].message}"
    assert set(SERVER_EVENT_TYPES) - {"interrupted"} <= {e.type for e in events}


def test_what_the_server_accepts_the_schema_allows() -> None:
    """Random page messages: whenever the parser accepts one, its schema validates it too."""
    rng = np.random.default_rng(5)
    schemas = load_schemas()
    values: list[object] = [None, True, False, 0, 1, -1, 2.5, 1.0, 2**60, "", " ", "x", "bedtime", "normal", "yuuri",
                            "AAAA", "AAA=", "QUJD", [], {}, [1], {"a": 1}, "あ" * 3]
    names = ["type", "text", "pcm", "persona", "value", "turn_id", "sentence_index", "played_s", "level", "id", "x"]
    accepted = 0
    for _ in range(4000):
        message: dict[str, object] = {"type": str(rng.choice(protocol.PAGE_MESSAGE_TYPES))}
        for name in rng.choice(names, size=int(rng.integers(0, 4)), replace=False):
            message[str(name)] = values[int(rng.integers(0, len(values)))]
        try:
            parsed = parse_page_message(json.dumps(message), LIMIT)
        except ProtocolError:
            continue
        accepted += 1
        errors = list(Draft202012Validator(schemas[parsed.type]).iter_errors(message))
        assert not errors, f"accepted {message} but the schema says: {errors[0].message}"
    assert accepted > 300


# ------------------------------------------------------------------------------------------------ docs


def test_protocol_doc_lists_every_message_type_and_the_version() -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^#{3,4} `([a-z-]+)`", doc, flags=re.M))
    everything = set(protocol.SERVER_MESSAGE_TYPES) | set(protocol.PAGE_MESSAGE_TYPES)
    assert everything <= headings, f"docs/protocol.md lacks: {sorted(everything - headings)}"
    assert headings <= everything, f"docs/protocol.md documents unknown types: {sorted(headings - everything)}"
    assert f"Protocol version: **{protocol.PROTOCOL_VERSION}**" in doc
    for code in load_schemas()["error"]["properties"]["code"]["enum"]:
        assert f"`{code}`" in doc, f"error code {code} is not documented"
