"""The event vocabulary: every message that passes between stages, to observers and to the page.

Each event is a small frozen dataclass with a stable ``type`` string. Adding an event is adding a class:
the registry, ``to_json`` and ``event_from_json`` pick it up. Audio rides as a numpy array plus its
sample rate and becomes base64 WAV only at the JSON edge (and only when asked for).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import time
import wave
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

import numpy as np

EVENT_TYPES: dict[str, type[Event]] = {}

#: The conversation modes: what a Mode or SetMode carries, what ``--mode`` and the page may choose.
ModeName = Literal["normal", "bedtime"]
MODES: tuple[ModeName, ...] = get_args(ModeName)


def now() -> float:
    """The pipeline's clock: monotonic seconds. Every timestamp on an event uses it."""
    return time.monotonic()


def _internal(default: Any = None, factory: Any = None) -> Any:
    """A field for the stages only: never in JSON (the page and the events log do not see it)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"internal": True}, compare=False)
    return field(default=default, metadata={"internal": True}, compare=False)


def _audio_field(json_name: str) -> Any:
    """A numpy audio field; in JSON it is base64 WAV under ``json_name`` (omitted unless asked for)."""
    return field(default_factory=lambda: np.zeros(0, dtype=np.float32), metadata={"audio_json": json_name},
                 compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event. Subclasses set ``type`` and, where a turn owns them, carry ``turn_id``."""

    type: ClassVar[str] = ""
    #: Internal events never leave the process (not sent to the page, not in the events log).
    internal: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # No zero-argument super() here: dataclass(slots=True) rebuilds the class, so each subclass
        # arrives twice (plain, then slotted); the slotted one replaces the plain one.
        if cls.type:
            known = EVENT_TYPES.get(cls.type)
            if known is not None and known.__qualname__ != cls.__qualname__:
                raise TypeError(f"event type {cls.type!r} is defined by {known.__qualname__} already")
            EVENT_TYPES[cls.type] = cls

    @property
    def turn(self) -> int | None:
        """The turn this event belongs to, or None for events that belong to no turn."""
        return getattr(self, "turn_id", None)

    def to_dict(self, include_audio: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            json_name = f.metadata.get("audio_json")
            if json_name:
                if include_audio and isinstance(value, np.ndarray) and value.size:
                    data[json_name] = encode_wav_base64(value, getattr(self, "sample_rate", 16000))
                continue
            if f.metadata.get("internal"):
                continue  # a field for the stages only, never sent to the page
            data[f.name] = _jsonable(value)
        return data

    def to_json(self, include_audio: bool = False) -> str:
        return json.dumps(self.to_dict(include_audio), ensure_ascii=False, separators=(",", ":"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from its JSON form. Raises ValueError on an unknown type or bad fields."""
    type_name = data.get("type")
    cls = EVENT_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise ValueError(f"unknown event type {type_name!r}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        json_name = f.metadata.get("audio_json")
        if json_name:
            if json_name in data:
                kwargs[f.name], _rate = decode_wav_base64(data[json_name])
            continue
        if f.name in data:
            value = data[f.name]
            if isinstance(value, list) and "tuple" in str(f.type):
                value = tuple(value)
            kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{type_name}: {exc}") from None


def event_from_json(text: str) -> Event:
    return event_from_dict(json.loads(text))


def encode_wav_base64(samples: np.ndarray, sample_rate: int) -> str:
    """float32 [-1, 1] or int16 samples -> base64 of a mono 16-bit WAV file."""
    if samples.dtype != np.int16:
        samples = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(samples.tobytes())
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_wav_base64(text: str) -> tuple[np.ndarray, int]:
    """The inverse of :func:`encode_wav_base64`: float32 samples and their rate."""
    with wave.open(io.BytesIO(base64.b64decode(text)), "rb") as src:
        rate = src.getframerate()
        pcm = np.frombuffer(src.readframes(src.getnframes()), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0, rate


# --------------------------------------------------------------------------------------------------
# Audio in
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioFrame(Event):
    """A short block of captured audio (16 kHz mono float32); ``timestamp`` is when its last sample was heard."""

    type: ClassVar[str] = "audio-frame"
    internal: ClassVar[bool] = True
    samples: np.ndarray = _audio_field("wav")
    sample_rate: int = 16000
    timestamp: float = 0.0


@dataclass(frozen=True, slots=True)
class InputEnded(Event):
    """The audio or text source has nothing more to give (end of a WAV file), or — with ``is_final``
    False — a pause in it (the page's microphone switched off): open speech is finished either way."""

    type: ClassVar[str] = "input-ended"
    internal: ClassVar[bool] = True
    is_final: bool = True


@dataclass(frozen=True, slots=True)
class VoiceStarted(Event):
    """The VAD heard a run of voiced audio begin at ``onset`` (it knows nothing of turns)."""

    type: ClassVar[str] = "voice-started"
    internal: ClassVar[bool] = True
    onset: float
    #: The VAD's number for this voiced segment (counted from 1 in one stream).
    segment_id: int = 0
    #: The onset on the audio's own clock (seconds into the stream): a file read faster than real time, or a
    #: busy machine, changes ``onset``'s spacing, never this.
    stream_onset: float | None = None


@dataclass(frozen=True, slots=True)
class VoicePaused(Event):
    """Silence began after speech at ``pause_start``; ``audio`` is the segment so far (for speculative ASR).
    ``pause_id`` names this pause, so that an end-of-turn hint can say which pause it was made for."""

    type: ClassVar[str] = "voice-paused"
    internal: ClassVar[bool] = True
    onset: float
    pause_start: float
    sample_rate: int = 16000
    audio: np.ndarray = _audio_field("wav")
    segment_id: int = 0
    pause_id: int = 0


@dataclass(frozen=True, slots=True)
class VoiceProbe(Event):
    """The first ``vad.language_probe_ms`` of a segment's speech, while it goes on: ``audio`` is the segment
    so far, for an early guess of its language (so that its words can go to the right model at the pause)."""

    type: ClassVar[str] = "voice-probe"
    internal: ClassVar[bool] = True
    onset: float
    sample_rate: int = 16000
    audio: np.ndarray = _audio_field("wav")
    segment_id: int = 0


@dataclass(frozen=True, slots=True)
class VoiceResumed(Event):
    """Speech came back within the hangover after a VoicePaused: the same segment goes on."""

    type: ClassVar[str] = "voice-resumed"
    internal: ClassVar[bool] = True
    onset: float
    at: float
    segment_id: int = 0


@dataclass(frozen=True, slots=True)
class VoiceEnded(Event):
    """A finished voiced segment: its audio (with pre-roll), its real end, and when the VAD decided."""

    type: ClassVar[str] = "voice-ended"
    internal: ClassVar[bool] = True
    onset: float
    speech_end: float
    decided_at: float
    sample_rate: int = 16000
    audio: np.ndarray = _audio_field("wav")
    #: True when the segment was cut at the maximum utterance length (the speaker may still be talking).
    is_cut: bool = False
    segment_id: int = 0
    #: The end of speech on the audio's own clock (seconds into the stream).
    stream_end: float | None = None


@dataclass(frozen=True, slots=True)
class VoiceDropped(Event):
    """A voiced run ended too short to be an utterance (a click, a cough, a backchannel)."""

    type: ClassVar[str] = "voice-dropped"
    internal: ClassVar[bool] = True
    onset: float
    speech_end: float
    segment_id: int = 0


@dataclass(frozen=True, slots=True)
class EndOfTurnHint(Event):
    """How long the silence after pause ``pause_id`` must last before the VAD ends its segment, decided from
    what was said so far (short after a finished sentence, long after 「〜けど」 or "and")."""

    type: ClassVar[str] = "end-of-turn-hint"
    internal: ClassVar[bool] = True
    pause_id: int
    hangover_ms: int
    #: complete, unfinished or unclear: what the words so far sounded like.
    reason: str = ""


@dataclass(frozen=True, slots=True)
class UserSpeechStarted(Event):
    """The user began to speak; ``onset`` is when the first voiced audio was heard."""

    type: ClassVar[str] = "user-speech-started"
    turn_id: int
    onset: float = 0.0


@dataclass(frozen=True, slots=True)
class UserSpeechEnded(Event):
    """One finished utterance: its audio and when speech really ended (not when the VAD decided).

    A turn may hold several voice segments (the user went on before the reply was heard): ``audio`` is all
    of them, ``segment_ids`` names them in order and ``segment_starts`` says where each begins in ``audio``.
    Each segment is recognised on its own, and the turn's text is their texts joined."""

    type: ClassVar[str] = "user-speech-ended"
    turn_id: int
    onset: float = 0.0
    speech_end: float = 0.0
    decided_at: float = 0.0
    sample_rate: int = 16000
    audio: np.ndarray = _audio_field("wav")
    segment_ids: tuple[int, ...] = _internal(())
    segment_starts: tuple[int, ...] = _internal(())
    #: The earlier turn this one continues (cancelled and merged into this one), if any.
    merged_from: int | None = _internal(None)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True, slots=True)
class UserSpeechPaused(Event):
    """The user paused inside a turn: the current segment's audio so far, to recognise it at once."""

    type: ClassVar[str] = "user-speech-paused"
    internal: ClassVar[bool] = True
    turn_id: int
    pause_start: float
    sample_rate: int = 16000
    audio: np.ndarray = _audio_field("wav")
    segment_id: int = 0
    pause_id: int = 0
    #: The segment said before this one in the same turn (its text prompts the recogniser), if any.
    previous_segment: int | None = None


@dataclass(frozen=True, slots=True)
class SegmentTranscript(Event):
    """One voice segment recognised (at its pause, or at its end): the turn controller judges from it whether
    the user has finished, and joins it into the turn's text."""

    type: ClassVar[str] = "segment-transcript"
    internal: ClassVar[bool] = True
    segment_id: int
    text: str
    language: str
    #: The pause the audio ran up to (0: the segment's end).
    pause_id: int = 0
    #: Whether the hallucination guard let it through (a rejected segment has empty text).
    is_speech: bool = True


@dataclass(frozen=True, slots=True)
class UserTranscript(Event):
    """What the user said in one turn, as recognised (or typed)."""

    type: ClassVar[str] = "user-transcript"
    turn_id: int
    text: str
    language: str = "ja"


@dataclass(frozen=True, slots=True)
class UserEmotion(Event):
    """How the user sounded in one turn: a canonical label, its score and every label's score.

    ``is_calibrated``: the scores come from a tagger trained on labelled speech; a heuristic's (prosody)
    are not, and its label is not shown to the user as a finding."""

    type: ClassVar[str] = "user-emotion"
    turn_id: int
    label: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    is_calibrated: bool = False


@dataclass(frozen=True, slots=True)
class TurnDropped(Event):
    """A user turn that gets no reply (nothing intelligible was said, a phantom phrase, a command handled)."""

    type: ClassVar[str] = "turn-dropped"
    turn_id: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class UserTurnReady(Event):
    """Everything the reply needs about the user's turn is known (transcript, and emotion if any)."""

    type: ClassVar[str] = "user-turn-ready"
    internal: ClassVar[bool] = True
    turn_id: int
    text: str
    language: str = "ja"
    emotion: str | None = None
    emotion_score: float = 0.0
    speech_end: float | None = None
    #: The earlier turn this one continues, and the text of each voice segment (in order).
    merged_from: int | None = None
    parts: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------------
# The assistant's side
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class State(Event):
    """What the assistant is doing: listening, thinking, speaking or sleeping."""

    type: ClassVar[str] = "state"
    value: str


@dataclass(frozen=True, slots=True)
class Sleeping(Event):
    """The sleep timer put the assistant to sleep (it answers only a wake phrase), or it woke up. Only the
    bedtime stage emits it; everyone else keeps its own view of sleep from this event."""

    type: ClassVar[str] = "sleeping"
    internal: ClassVar[bool] = True
    is_asleep: bool


@dataclass(frozen=True, slots=True)
class WakeRequest(Event):
    """A wake phrase was heard while asleep; the bedtime stage, which owns sleep, wakes (Sleeping(False))."""

    type: ClassVar[str] = "wake-request"
    internal: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class SayRequest(Event):
    """A stage asks to say a line nobody asked for (a bedtime presence line); the turn controller opens a turn
    for it (ScriptedLine)."""

    type: ClassVar[str] = "say-request"
    internal: ClassVar[bool] = True
    persona: str
    text: str
    #: Fade the audio out over its last this-many seconds (the last good-night line); 0 for none.
    fade_out_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ScriptedLine(Event):
    """The turn opened for a SayRequest: the reply stage speaks ``text`` in it (and ends it with TurnDone)."""

    type: ClassVar[str] = "scripted-line"
    internal: ClassVar[bool] = True
    turn_id: int
    persona: str
    text: str
    fade_out_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Speaker(Event):
    """The session's persona is now this one (only the SessionStage says it: at start and after each switch).
    Who says a given line is not this: it is the ``persona`` of the line's own Subtitle, ReplyDone, TurnDone."""

    type: ClassVar[str] = "speaker"
    persona: str
    display_name: str


@dataclass(frozen=True, slots=True)
class Mode(Event):
    """The conversation mode: normal or bedtime (one of ``MODES``)."""

    type: ClassVar[str] = "mode"
    value: str


@dataclass(frozen=True, slots=True)
class LlmToken(Event):
    """A piece of the reply text as the language model streams it."""

    type: ClassVar[str] = "llm-token"
    internal: ClassVar[bool] = True
    turn_id: int
    text: str


@dataclass(frozen=True, slots=True)
class Expression(Event):
    """The persona's facial expression (from a tag in the model's text or from the user's emotion)."""

    type: ClassVar[str] = "expression"
    persona: str
    name: str
    turn_id: int | None = None


@dataclass(frozen=True, slots=True)
class Subtitle(Event):
    """One sentence of the reply, clean for speech and display."""

    type: ClassVar[str] = "subtitle"
    turn_id: int
    persona: str
    sentence_index: int
    text: str
    language: str = "ja"
    is_scripted: bool = False
    #: Fade the audio out to silence over its last this-many seconds (the last good-night line); stages only, not JSON.
    fade_out_s: float = field(default=0.0, compare=False, metadata={"internal": True})


@dataclass(frozen=True, slots=True)
class ReplyDone(Event):
    """The language model finished (or was cut off); ``text`` is the whole clean reply it produced."""

    type: ClassVar[str] = "reply-done"
    internal: ClassVar[bool] = True
    turn_id: int
    persona: str
    text: str
    sentence_count: int


@dataclass(frozen=True, slots=True)
class Audio(Event):
    """Synthesised speech for one sentence, with mouth-opening values (0..1, one per 20 ms)."""

    type: ClassVar[str] = "audio"
    turn_id: int
    sentence_index: int
    sample_rate: int
    samples: np.ndarray = _audio_field("wav")
    mouth: tuple[float, ...] = ()
    text: str = ""

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True, slots=True)
class PlaybackStarted(Event):
    """The first sample of a sentence reached the output (speaker, file or page)."""

    type: ClassVar[str] = "playback-started"
    internal: ClassVar[bool] = True
    turn_id: int
    sentence_index: int
    at: float = 0.0
    #: RMS level (0..1) of the sentence being played, for the echo gate.
    level: float = 0.0


@dataclass(frozen=True, slots=True)
class PlaybackFinished(Event):
    """A sentence finished playing (or was cut: ``played_s`` says how much of it was heard)."""

    type: ClassVar[str] = "playback-finished"
    internal: ClassVar[bool] = True
    turn_id: int
    sentence_index: int
    played_s: float = 0.0
    at: float = 0.0
    #: The sentence's whole length, so a cut sentence's spoken part can be told apart.
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class OutputHold(Event):
    """Urgent: pause playback at once (the user may be barging in)."""

    type: ClassVar[str] = "output-hold"
    internal: ClassVar[bool] = True
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class OutputResume(Event):
    """Urgent: the sound was only a backchannel or a cough; continue playback where it paused."""

    type: ClassVar[str] = "output-resume"
    internal: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class TurnDone(Event):
    """The assistant's reply for a turn ended: what was actually spoken, and whether it was cut off."""

    type: ClassVar[str] = "turn-done"
    internal: ClassVar[bool] = True
    turn_id: int
    persona: str
    spoken_text: str
    is_interrupted: bool = False


@dataclass(frozen=True, slots=True)
class Interrupted(Event):
    """The user barged in (or the turn was superseded): everything else of this turn is dropped."""

    type: ClassVar[str] = "interrupted"
    turn_id: int


# --------------------------------------------------------------------------------------------------
# Measurement, control and errors
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StageTiming(Event):
    """A stage reports how long it worked on a turn (monotonic seconds)."""

    type: ClassVar[str] = "stage-timing"
    internal: ClassVar[bool] = True
    turn_id: int
    stage: str
    started_at: float
    ended_at: float

    @property
    def ms(self) -> float:
        return (self.ended_at - self.started_at) * 1000.0


@dataclass(frozen=True, slots=True)
class Latency(Event):
    """Per-turn timings: each stage in milliseconds and end of speech -> first audio."""

    type: ClassVar[str] = "latency"
    turn_id: int
    stages_ms: dict[str, float] = field(default_factory=dict)
    voice_to_voice_ms: float | None = None


@dataclass(frozen=True, slots=True)
class TextInput(Event):
    """Typed text from the terminal or the page; it opens a turn like speech does."""

    type: ClassVar[str] = "text-input"
    internal: ClassVar[bool] = True
    text: str


@dataclass(frozen=True, slots=True)
class SetPersona(Event):
    """A request to switch persona (from the page, a voice command or the command line)."""

    type: ClassVar[str] = "set-persona"
    internal: ClassVar[bool] = True
    persona: str


@dataclass(frozen=True, slots=True)
class SetMode(Event):
    """A request to change mode (from the page, a voice command, the schedule); checked against ``MODES``."""

    type: ClassVar[str] = "set-mode"
    internal: ClassVar[bool] = True
    value: str


@dataclass(frozen=True, slots=True)
class InterruptRequest(Event):
    """The page's interrupt button: stop the current reply."""

    type: ClassVar[str] = "interrupt-request"
    internal: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Notice(Event):
    """Something the user should be told that is not an answer (engine fallback, a model loading)."""

    type: ClassVar[str] = "notice"
    message: str
    turn_id: int | None = None


@dataclass(frozen=True, slots=True)
class Error(Event):
    """Something went wrong; ``message`` is one line for a person."""

    type: ClassVar[str] = "error"
    message: str
    turn_id: int | None = None
    #: False when the stage that failed still finishes the turn itself (e.g. with an apology line).
    ends_turn: bool = True


SERVER_EVENT_TYPES: tuple[str, ...] = tuple(t for t, c in EVENT_TYPES.items() if not c.internal)
