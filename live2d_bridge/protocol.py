"""The page protocol: what a page may send (parsed and checked here) and what the server sends back.

Every message is one JSON object with a ``type``. Page -> server messages are checked field by field;
anything wrong becomes a :class:`ProtocolError` whose one-line message goes back to the page as an
``error`` reply (the connection stays open). Server -> page messages are the non-internal events of
:mod:`assistant.events` plus ``hello``, ``pong`` and ``error`` replies. docs/protocol.md describes them and
live2d_bridge/schemas/ holds a JSON Schema for each.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from assistant.events import (
    MODES,
    SERVER_EVENT_TYPES,
    AudioFrame,
    Event,
    InputEnded,
    InterruptRequest,
    PlaybackFinished,
    PlaybackStarted,
    SetMode,
    SetPersona,
    TextInput,
    now,
)

#: Bumped when a message changes in a way an older page or server cannot follow.
PROTOCOL_VERSION = 1

#: The microphone format a page sends: PCM16 little-endian, mono, at this rate.
MIC_SAMPLE_RATE = 16000

STATES: tuple[str, ...] = ("listening", "thinking", "speaking", "sleeping")

#: What this server understands, announced in ``hello``.
CAPABILITIES: tuple[str, ...] = (
    "text-input", "mic-audio", "interrupt", "set-persona", "set-mode", "playback-report", "ping",
)

MAX_TEXT_CHARS = 2000
MAX_ID_CHARS = 64

PAGE_MESSAGE_TYPES: tuple[str, ...] = (
    "text-input", "mic-audio", "mic-end", "interrupt", "set-persona", "set-mode",
    "playback-started", "playback-finished", "ping",
)
#: Replies and greetings that are not events.
REPLY_TYPES: tuple[str, ...] = ("hello", "pong")
SERVER_MESSAGE_TYPES: tuple[str, ...] = (*REPLY_TYPES, *SERVER_EVENT_TYPES)


class ProtocolError(Exception):
    """A page message that cannot be accepted; ``code`` is machine-readable, the message is for people."""

    def __init__(self, code: str, message: str, message_id: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.message_id = message_id


@dataclass(frozen=True, slots=True)
class PageMessage:
    """One checked page -> server message: its type, its fields, and the page's optional ``id``."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)
    id: str | int | None = None


# --------------------------------------------------------------------------------------------------
# Field checks: each takes the message type, the field name and the value, returns the clean value.
# --------------------------------------------------------------------------------------------------

Check = Callable[[str, str, Any], Any]


def _bad(kind: str, name: str, what: str) -> ProtocolError:
    return ProtocolError("bad-field", f"{kind}: '{name}' {what}")


def _text(kind: str, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(kind, name, "must be a non-empty string")
    if len(value) > MAX_TEXT_CHARS:
        raise _bad(kind, name, f"is too long ({len(value)} characters, at most {MAX_TEXT_CHARS})")
    return value.strip()


def _ident(kind: str, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        raise _bad(kind, name, f"must be a non-empty string of at most {MAX_ID_CHARS} characters")
    return value


def _index(kind: str, name: str, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise _bad(kind, name, "must be a whole number >= 0")
    return value


def _seconds(kind: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86400:
        raise _bad(kind, name, "must be a number of seconds >= 0")
    return float(value)


def _level(kind: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise _bad(kind, name, "must be a number from 0 to 1")
    return float(value)


def _mode(kind: str, name: str, value: Any) -> str:
    if value not in MODES:
        raise _bad(kind, name, f"must be one of {', '.join(MODES)}")
    return str(value)


def _pcm(kind: str, name: str, value: Any) -> np.ndarray:
    if not isinstance(value, str) or not value:
        raise _bad(kind, name, "must be base64 PCM16 (16 kHz mono, little-endian)")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(kind, name, "is not valid base64") from None
    if not raw or len(raw) % 2:
        raise _bad(kind, name, f"must hold whole 16-bit samples (got {len(raw)} bytes)")
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


@dataclass(frozen=True, slots=True)
class _Spec:
    required: dict[str, Check] = field(default_factory=dict)
    optional: dict[str, Check] = field(default_factory=dict)


_SPECS: dict[str, _Spec] = {
    "text-input": _Spec({"text": _text}),
    "mic-audio": _Spec({"pcm": _pcm}),
    "mic-end": _Spec(),
    "interrupt": _Spec(),
    "set-persona": _Spec({"persona": _ident}),
    "set-mode": _Spec({"value": _mode}),
    "playback-started": _Spec({"turn_id": _index, "sentence_index": _index}, {"level": _level}),
    "playback-finished": _Spec({"turn_id": _index, "sentence_index": _index}, {"played_s": _seconds}),
    "ping": _Spec(),
}
assert tuple(_SPECS) == PAGE_MESSAGE_TYPES


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _message_id(data: dict[str, Any]) -> str | int | None:
    value = data.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ProtocolError("bad-field", "'id' must be a string or a whole number")
    if isinstance(value, str) and len(value) > MAX_ID_CHARS:
        raise ProtocolError("bad-field", f"'id' must be at most {MAX_ID_CHARS} characters")
    if isinstance(value, int) and abs(value) >= 2**53:
        raise ProtocolError("bad-field", "'id' is too large")
    return value


def parse_page_message(raw: str | bytes, max_bytes: int) -> PageMessage:
    """Check one page -> server message. Raises ProtocolError (with a one-line message) when it is wrong."""
    if isinstance(raw, bytes | bytearray | memoryview):
        raise ProtocolError("binary", "binary messages are not accepted — send JSON text")
    size = len(raw.encode("utf-8", "surrogatepass")) if len(raw) * 4 > max_bytes else len(raw)
    if size > max_bytes:
        raise ProtocolError("too-large", f"message too large ({size} bytes, at most {max_bytes})")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        reason = str(exc).split("\n")[0][:120] if isinstance(exc, ValueError) else "nested too deeply"
        raise ProtocolError("bad-json", f"not valid JSON ({reason})") from None
    if not isinstance(data, dict):
        raise ProtocolError("not-object", "a message must be a JSON object with a 'type'")
    message_id = _message_id(data)
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("missing-type", "a message needs a 'type' string", message_id)
    spec = _SPECS.get(kind)
    if spec is None:
        shown = kind if len(kind) <= 40 else kind[:40] + "…"
        raise ProtocolError("unknown-type", f"unknown message type {shown!r} (known: {', '.join(PAGE_MESSAGE_TYPES)})",
                            message_id)
    fields: dict[str, Any] = {}
    try:
        for name in data:
            if name not in ("type", "id") and name not in spec.required and name not in spec.optional:
                shown = name if len(name) <= 40 else name[:40] + "…"
                raise ProtocolError("unknown-field", f"{kind}: unknown field {shown!r}")
        for name, check in spec.required.items():
            if name not in data:
                raise ProtocolError("bad-field", f"{kind}: '{name}' is missing")
            fields[name] = check(kind, name, data[name])
        for name, check in spec.optional.items():
            if name in data and data[name] is not None:
                fields[name] = check(kind, name, data[name])
    except ProtocolError as exc:
        exc.message_id = message_id
        raise
    return PageMessage(kind, fields, message_id)


def page_event(message: PageMessage) -> Event | None:
    """The pipeline event a page message stands for (``ping`` stands for none: it is answered directly)."""
    f = message.fields
    kind = message.type
    if kind == "text-input":
        return TextInput(text=f["text"])
    if kind == "mic-audio":
        return AudioFrame(samples=f["pcm"], sample_rate=MIC_SAMPLE_RATE, timestamp=now())
    if kind == "mic-end":
        return InputEnded(is_final=False)
    if kind == "interrupt":
        return InterruptRequest()
    if kind == "set-persona":
        return SetPersona(persona=f["persona"])
    if kind == "set-mode":
        return SetMode(value=f["value"])
    if kind == "playback-started":
        return PlaybackStarted(turn_id=f["turn_id"], sentence_index=f["sentence_index"], at=now(),
                               level=f.get("level", 0.0))
    if kind == "playback-finished":
        return PlaybackFinished(turn_id=f["turn_id"], sentence_index=f["sentence_index"],
                                played_s=f.get("played_s", 0.0), at=now())
    return None


# --------------------------------------------------------------------------------------------------
# Server -> page
# --------------------------------------------------------------------------------------------------


def encode(message: dict[str, Any]) -> str:
    """One message as compact JSON text (non-finite numbers become null so the page can always parse it)."""
    try:
        return json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(message), ensure_ascii=False, separators=(",", ":"))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def event_message(event: Event, include_audio: bool = False) -> dict[str, Any]:
    """A non-internal event as the page receives it."""
    return event.to_dict(include_audio=include_audio)


def error_message(message: str, code: str = "error", message_id: str | int | None = None) -> dict[str, Any]:
    """An ``error`` reply to something the page sent (the same shape as the pipeline's Error event, plus code)."""
    reply: dict[str, Any] = {"type": "error", "message": message, "turn_id": None, "code": code}
    if message_id is not None:
        reply["id"] = message_id
    return reply


def pong_message(message_id: str | int | None = None) -> dict[str, Any]:
    reply: dict[str, Any] = {"type": "pong", "time": round(now(), 6)}
    if message_id is not None:
        reply["id"] = message_id
    return reply
