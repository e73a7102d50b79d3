"""Fixtures for the end-to-end barge-in tests: the real assembled conversation (feed input, realtime WAV
output, Piper joe, Whisper tiny.en) talking to tests/fixtures/llm.py's scripted ``chat_peer``, a real-time
microphone that plays speech (and the assistant's own echo) into the feed source, and a bus recorder."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import yaml

from assistant.audio.resample import TARGET_RATE, resample
from assistant.audio.sinks import AudioSink, WavFileSink
from assistant.audio.sources import PcmFeedSource
from assistant.config.loader import Settings, load_settings
from assistant.events import Audio, Event, PlaybackStarted, now
from assistant.pipeline.assemble import Conversation, Options
from assistant.pipeline.bus import Bus
from tests.fixtures.llm import ChatPeer
from tests.fixtures.speech import Clip, SpeechMaker, speech_span

E = TypeVar("E", bound=Event)

#: The microphone's chunk: 20 ms at 16 kHz.
CHUNK = TARGET_RATE // 50

# ------------------------------------------------------------------------------------------------
# The configuration: a private copy of config/ with the English Piper voice and Whisper tiny.en
# ------------------------------------------------------------------------------------------------


def _edit_yaml(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


@pytest.fixture
def bargein_settings(config_dir: Path) -> Callable[..., Settings]:
    """``make(echo_gate="off", **barge_in)`` -> the cpu-profile settings of a private config copy in which every
    persona speaks English with Piper joe, ASR is Whisper tiny.en in English, and data lives in the temp dir."""

    def make(echo_gate: str = "off", **barge_in: Any) -> Settings:
        def persona(data: dict[str, Any]) -> None:
            data["language"] = "en"
            data["voice"] = {"backend": "piper", "voice": "offline:joe-us"}
            data["alt_voices"] = {}

        for path in sorted((config_dir / "personas").glob("*.yaml")):
            _edit_yaml(path, persona)

        def profile(data: dict[str, Any]) -> None:
            asr = data.setdefault("assistant", {}).setdefault("asr", {})
            asr.update({"model": "offline:whisper-tiny.en", "language": "en", "device": "cpu",
                        "compute_type": "int8"})

        _edit_yaml(config_dir / "profiles" / "cpu.yaml", profile)

        def assistant(data: dict[str, Any]) -> None:
            data["language"] = "en"
            data["barge_in"] = {**data.get("barge_in", {}), "enabled": True, "echo_gate": echo_gate, **barge_in}

        _edit_yaml(config_dir / "assistant.yaml", assistant)
        return load_settings(config_dir, "cpu")

    return make


# ------------------------------------------------------------------------------------------------
# Watching the bus
# ------------------------------------------------------------------------------------------------


class Recorder:
    """Everything published on a bus, and a way to wait for an event."""

    def __init__(self, bus: Bus) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        bus.subscribe(self._add)

    def _add(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: type[E], turn_id: int | None = None) -> list[E]:
        return [e for e in self.events if isinstance(e, kind) and (turn_id is None or e.turn == turn_id)]

    async def wait_for(self, kind: type[E], where: Callable[[E], bool] = lambda e: True,
                       timeout: float = 30.0) -> E:
        """The first ``kind`` event for which ``where`` holds; fails after ``timeout`` seconds."""
        async def first() -> E:
            while True:
                for event in self.events:
                    if isinstance(event, kind) and where(event):
                        return event
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(first(), timeout)
        except TimeoutError:
            seen = [e.type for e in self.events]
            raise AssertionError(f"no matching {kind.__name__} within {timeout} s; saw {seen}") from None


# ------------------------------------------------------------------------------------------------
# The microphone
# ------------------------------------------------------------------------------------------------


@dataclass
class Spoken:
    """Speech queued into the microphone: when its first voiced sample was heard, when it was all fed."""

    samples: np.ndarray = field(repr=False)
    voiced_at: int
    onset: asyncio.Future[float]
    done: asyncio.Future[float]


class Microphone:
    """A microphone in real time: a 20 ms chunk into the feed source every 20 ms — silence (with a faint
    noise floor) unless queued speech or the assistant's echo is sounding; both are mixed in."""

    def __init__(self, source: PcmFeedSource, noise_rms: float = 3e-4, seed: int = 0) -> None:
        self.source = source
        #: Called every 20 ms for new audio to mix in after the echo already queued (an EchoPath).
        self.echo_path: Callable[[], np.ndarray] | None = None
        self.noise_rms = noise_rms
        self._rng = np.random.default_rng(seed)
        self._speech: list[Spoken] = []
        self._position = 0  # samples of the current speech already fed
        self._echo = np.zeros(0, dtype=np.float32)
        self._task: asyncio.Task[None] | None = None

    def say(self, samples: np.ndarray) -> Spoken:
        """Queue 16 kHz speech (after what is queued); ``onset`` resolves to the monotonic time its first
        voiced sample was heard, stamped as the feed source stamps samples (a chunk's last sample at feed)."""
        loop = asyncio.get_running_loop()
        samples = np.asarray(samples, dtype=np.float32)
        spoken = Spoken(samples=samples, voiced_at=round(speech_span(samples)[0] * TARGET_RATE),
                        onset=loop.create_future(), done=loop.create_future())
        self._speech.append(spoken)
        return spoken

    def echo(self, samples: np.ndarray) -> None:
        """Mix 16 kHz audio into what the microphone hears next (after echo already queued)."""
        self._echo = np.concatenate([self._echo, np.asarray(samples, dtype=np.float32)])

    def _next_chunk(self) -> tuple[np.ndarray, list[tuple[Spoken, int]], list[Spoken]]:
        """The next 20 ms: noise + speech + echo; which speech had its onset here (and where), which ended."""
        chunk = (self._rng.normal(0.0, self.noise_rms, CHUNK).astype(np.float32) if self.noise_rms
                 else np.zeros(CHUNK, dtype=np.float32))
        onsets: list[tuple[Spoken, int]] = []
        ended: list[Spoken] = []
        filled = 0
        while filled < CHUNK and self._speech:
            spoken = self._speech[0]
            take = min(CHUNK - filled, len(spoken.samples) - self._position)
            chunk[filled:filled + take] += spoken.samples[self._position:self._position + take]
            if self._position <= spoken.voiced_at < self._position + take:
                onsets.append((spoken, filled + spoken.voiced_at - self._position))
            self._position += take
            filled += take
            if self._position >= len(spoken.samples):
                self._speech.pop(0)
                self._position = 0
                ended.append(spoken)
        if self.echo_path is not None:
            self.echo(self.echo_path())
        if self._echo.size:
            take = min(CHUNK, len(self._echo))
            chunk[:take] += self._echo[:take]
            self._echo = self._echo[take:]
        return np.clip(chunk, -1.0, 1.0), onsets, ended

    async def run(self) -> None:
        started = now()
        count = 0
        while True:
            count += 1
            delay = started + count * CHUNK / TARGET_RATE - now()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk, onsets, ended = self._next_chunk()
            fed_at = now()
            self.source.feed(chunk)
            for spoken, index in onsets:
                spoken.onset.set_result(fed_at - (CHUNK - index) / TARGET_RATE)
            for spoken in ended:
                spoken.done.set_result(fed_at)

    async def __aenter__(self) -> Microphone:
        self._task = asyncio.create_task(self.run(), name="test-microphone")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class EchoPath:
    """The room between the assistant's speaker and the microphone, at ``gain`` (resampled to 16 kHz).

    ``model="played"``: whatever the sink has just played comes back, block by block, so when the output
    holds or stops the echo does too (a speaker with a short buffer). ``model="sent"``: each sentence comes
    back whole from the moment it starts to play, whatever the output does next (a speaker with a deep
    buffer, e.g. Bluetooth, that keeps sounding after a hold)."""

    def __init__(self, bus: Bus, sink: AudioSink, gain: float = 0.3, model: str = "played") -> None:
        if model not in ("played", "sent"):
            raise ValueError(f"unknown echo model {model!r}")
        self.sink = sink
        self.gain = gain
        self.model = model
        self._audio: dict[tuple[int, int], np.ndarray] = {}
        self._played: dict[tuple[int, int], float] = {}  # seconds of each sentence echoed so far
        self._seen = 0
        self._sent: list[np.ndarray] = []
        self.echoed_s = 0.0
        bus.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Audio):
            self._audio[(event.turn_id, event.sentence_index)] = self.gain * resample(
                event.samples, event.sample_rate, TARGET_RATE)
        elif isinstance(event, PlaybackStarted) and self.model == "sent":
            samples = self._audio.get((event.turn_id, event.sentence_index))
            if samples is not None:
                self._sent.append(samples)
                self.echoed_s += len(samples) / TARGET_RATE

    def __call__(self) -> np.ndarray:
        """The 16 kHz echo that reached the microphone since the last call."""
        if self.model == "sent":
            pieces, self._sent = self._sent, []
            return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
        blocks = list(self.sink.blocks)[self._seen:]
        self._seen += len(blocks)
        pieces = []
        for block in blocks:
            key = (block.turn_id, block.sentence_index)
            samples = self._audio.get(key)  # type: ignore[arg-type]
            if samples is None:
                continue
            start = self._played.get(key, 0.0)
            self._played[key] = start + block.duration_s
            pieces.append(samples[round(start * TARGET_RATE):round((start + block.duration_s) * TARGET_RATE)])
            self.echoed_s += block.duration_s
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


# ------------------------------------------------------------------------------------------------
# The conversation
# ------------------------------------------------------------------------------------------------


@dataclass
class Talk:
    """A running voice conversation with its microphone, recorder and WAV sink."""

    conversation: Conversation
    microphone: Microphone
    record: Recorder
    sink: WavFileSink
    output: Path


def output_sink(conversation: Conversation) -> WavFileSink:
    from assistant.audio.output_stage import OutputStage

    stages = [s for s in conversation.pipeline.stages if isinstance(s, OutputStage)]
    assert len(stages) == 1 and isinstance(stages[0].sink, WavFileSink)
    return stages[0].sink


@pytest.fixture
def talk(tmp_path: Path, chat_peer: ChatPeer) -> Callable[..., contextlib.AbstractAsyncContextManager[Talk]]:
    """``async with talk(settings, use_memory=False) as t:`` — the real assembled conversation with feed input,
    a realtime WAV sink, the LLM routed to ``chat_peer``, and a real-time microphone already running."""

    @contextlib.asynccontextmanager
    async def make(settings: Settings, use_memory: bool = False) -> AsyncIterator[Talk]:
        output = tmp_path / "reply.wav"
        options = Options(input="feed", output="file", output_path=output, is_realtime=True,
                          llm_url=chat_peer.base_url, llm_model="peer", use_memory=use_memory)
        conversation = Conversation(settings, options)
        record = Recorder(conversation.bus)
        assert isinstance(conversation.source, PcmFeedSource)
        async with conversation, Microphone(conversation.source) as microphone:
            yield Talk(conversation, microphone, record, output_sink(conversation), output)

    return make


@pytest.fixture(scope="session")
def clips(speech_maker: SpeechMaker) -> Callable[[str], Clip]:
    """``clip(text)`` -> real English speech (Piper joe, 16 kHz), made once per text."""
    made: dict[str, Clip] = {}

    def clip(text: str) -> Clip:
        if text not in made:
            made[text] = speech_maker.english(text)
        return made[text]

    return clip
