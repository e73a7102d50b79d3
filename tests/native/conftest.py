"""Fixtures for the native sound path: the `saijin` command on a private PulseAudio server (tests/fixtures/pulse.py),
with its microphone on the "micfeed" null sink and its speaker on the "room" one, answered by a scripted
OpenAI-compatible peer so that the reply is known English words."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.audio.wavfile import write_wav
from tests.fixtures.llm import ChatPeer, serving
from tests.fixtures.pulse import PulseServer
from tests.reliability.conftest import (
    RATE,
    edit_yaml,
    english_speech,
    saijin_argv,
    saijin_env,
    use_fast_voices,
    with_silence,
)

#: What the scripted engine answers: plain English words the Piper voice says and Whisper tiny.en hears back.
REPLY = "The weather is sunny and warm today."


@pytest.fixture
def native_config(config_dir: Path) -> Path:
    """The shipped config (data in tmp, the bridge off) with the fast voice and ASR, the microphone "mic feed"
    and the speaker "room" by name."""
    use_fast_voices(config_dir)
    edit_yaml(config_dir / "assistant.yaml", {"bridge": {"port": 0},
                                              "audio": {"input_device": "mic feed", "output_device": "room"}})
    edit_yaml(config_dir / "profiles" / "cpu.yaml",
              {"assistant": {"asr": {"model": "offline:whisper-tiny.en", "language": "en"}}})
    return config_dir


@pytest.fixture
async def reply_peer() -> AsyncIterator[ChatPeer]:
    async with serving(ChatPeer(replies=[REPLY])) as peer:
        yield peer


def spoken_wav(folder: Path, name: str, text: str, lead_s: float, tail_s: float) -> Path:
    """English ``text`` spoken (Piper) with silence around it, as a WAV for paplay to speak into the mic."""
    return write_wav(folder / name, with_silence(lead_s, english_speech(text), tail_s), RATE)


@pytest.fixture(scope="session")
def question_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An English question with a little silence around it."""
    return spoken_wav(tmp_path_factory.mktemp("native"), "question.wav", "Hello, how are you today?", 0.3, 0.8)


@dataclass
class Saijin:
    """A running `saijin run --input mic --output speaker`: its stdout and stderr lines as they come."""

    proc: asyncio.subprocess.Process
    events_path: Path
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    async def _read(self, stream: asyncio.StreamReader, into: list[str]) -> None:
        while line := await stream.readline():
            into.append(line.decode(errors="replace").rstrip("\n"))

    async def wait_for(self, needle: str, where: str = "stderr", timeout: float = 120) -> str:
        lines = self.stderr if where == "stderr" else self.stdout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in lines:
                if needle in line:
                    return line
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(f"{needle!r} not on {where} after {timeout} s (exit {self.proc.returncode}):\n"
                             + "\n".join(self.stdout[-20:] + self.stderr[-20:]))

    def events(self) -> list[dict[str, Any]]:
        if not self.events_path.is_file():
            return []
        lines = self.events_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    async def wait_until_said(self, replies: int = 1, timeout: float = 120) -> list[dict[str, Any]]:
        """Until ``replies`` replies have been spoken (the state went speaking -> listening that often)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [e["value"] for e in self.events() if e["type"] == "state"]
            done = sum(1 for a, b in itertools.pairwise(states) if a == "speaking" and b == "listening")
            if done >= replies:
                return self.events()
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        raise AssertionError(f"{replies} replies not spoken after {timeout} s: {self.stdout[-20:]} {self.stderr[-20:]}")

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await asyncio.gather(*self.readers, return_exceptions=True)
        return self.proc.returncode or 0


@contextlib.asynccontextmanager
async def running_saijin(pulse: PulseServer, config: Path, peer: ChatPeer, *extra: str) -> AsyncIterator[Saijin]:
    """`saijin run --input mic --output speaker` on ``pulse``, answered by ``peer``; ready to listen when yielded."""
    events = config.parent / "events.jsonl"
    argv = saijin_argv("run", "--input", "mic", "--output", "speaker", "--config", str(config), "--profile", "cpu",
                       "--no-bridge", "--llm-url", peer.base_url, "--llm-model", "scripted", "--events", str(events),
                       *extra)
    proc = await asyncio.create_subprocess_exec(*argv, env=pulse.client_env(**saijin_env()),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    saijin = Saijin(proc, events)
    assert proc.stdout is not None and proc.stderr is not None
    saijin.readers = [asyncio.create_task(saijin._read(proc.stdout, saijin.stdout)),
                      asyncio.create_task(saijin._read(proc.stderr, saijin.stderr))]
    try:
        await saijin.wait_for("ready: listening", timeout=180)
        yield saijin
    finally:
        await saijin.stop()


def speech_seconds(samples: np.ndarray, threshold: float = 0.01, frame_s: float = 0.02) -> float:
    """How much of a recording is sound (20 ms frames louder than ``threshold`` RMS)."""
    step = int(RATE * frame_s)
    frames = samples[: len(samples) // step * step].reshape(-1, step)
    return float((np.sqrt((frames ** 2).mean(axis=1)) > threshold).sum() * frame_s)


def room_loopback(pulse: PulseServer, delay_ms: int = 60, volume: str = "60%") -> int:
    """Loudspeakers in a room: what the speaker plays reaches the microphone ``delay_ms`` later, quieter
    (``volume`` of the sink input: 60% is about -13 dB). Returns the module index (unload it to stop)."""
    module = pulse.load_module("module-loopback", "source=room.monitor", "sink=micfeed", f"latency_msec={delay_ms}",
                               "source_dont_move=true", "sink_dont_move=true")
    inputs = json.loads(pulse.pactl("-f", "json", "list", "sink-inputs").stdout)
    ours = [i for i in inputs if str(i.get("owner_module")) == str(module)]
    assert ours, inputs
    pulse.pactl("set-sink-input-volume", str(ours[0]["index"]), volume)
    return module


def sound_spans(samples: np.ndarray, threshold: float = 0.01, frame_s: float = 0.02,
                min_gap_s: float = 0.3) -> list[tuple[float, float]]:
    """The stretches of sound in a recording, in seconds; silences shorter than ``min_gap_s`` do not split."""
    step = int(RATE * frame_s)
    frames = samples[: len(samples) // step * step].reshape(-1, step)
    loud = np.sqrt((frames ** 2).mean(axis=1)) > threshold
    spans: list[tuple[float, float]] = []
    for index in np.flatnonzero(loud):
        begin, end = index * frame_s, (index + 1) * frame_s
        if spans and begin - spans[-1][1] < min_gap_s:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((begin, end))
    return spans
