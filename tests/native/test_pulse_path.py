"""The native sound path on a real PulseAudio server (what WSLg gives a WSL2 user): PortAudio -> ALSA's pulse
plugin -> the server. The microphone is the "mic feed" null sink (paplay speaks into it), the speaker is the
"room" null sink (parecord records its monitor); both are chosen by name in config/assistant.yaml."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from assistant.audio.wavfile import read_wav
from tests.fixtures.llm import ChatPeer
from tests.fixtures.pulse import PulseServer
from tests.native.conftest import REPLY, running_saijin, speech_seconds
from tests.reliability.conftest import RATE, edit_yaml, run_saijin

#: What the terminal may show besides the conversation: saijin's own status lines, nothing from ALSA/PortAudio.
NOISE = re.compile(r"ALSA|underrun|snd_pcm|PortAudio|Expression '|pa_linux|Traceback", re.I)


@pytest.mark.slow
async def test_a_question_into_the_mic_is_answered_out_of_the_speaker(
        pulse_server: PulseServer, native_config: Path, reply_peer: ChatPeer, question_wav: Path,
        transcribe: Callable[[object], str], tmp_path: Path) -> None:
    recording = pulse_server.record(tmp_path / "room.wav")
    async with running_saijin(pulse_server, native_config, reply_peer) as saijin:
        player = pulse_server.play(question_wav)
        assert await asyncio.to_thread(player.wait) == 0, player.stderr
        events = await saijin.wait_until_said(1)
        await asyncio.sleep(0.5)  # the device buffer's last samples reach the room
    room = read_wav(recording.stop(), sample_rate=RATE)
    # (A pause after "Hello," may make a speculative transcript or a turn of its own: the words are what count.)
    heard = " ".join(e["text"] for e in events if e["type"] == "user-transcript").lower()
    assert "how are you" in heard, heard
    said = [e["text"] for e in events if e["type"] == "subtitle"]
    assert said and set(said) == {REPLY}, said
    # The room heard the reply, all of it, and it transcribes back.
    assert speech_seconds(room) > 1.0, f"{speech_seconds(room):.2f} s of sound in the room"
    back = transcribe(room).lower()
    assert "weather" in back and "sunny" in back, back
    # Nothing but the conversation on the screen: ALSA's and PortAudio's chatter goes to the log.
    noise = [line for line in saijin.stdout + saijin.stderr if NOISE.search(line)]
    assert not noise, noise


def test_an_unknown_device_name_is_one_line_naming_the_devices_there_are(
        pulse_server: PulseServer, native_config: Path, tmp_path: Path) -> None:
    edit_yaml(native_config / "assistant.yaml", {"audio": {"input_device": "no such mic"}})
    proc = run_saijin("run", "--input", "mic", "--output", str(tmp_path / "out.wav"), "--no-bridge",
                      "--config", str(native_config), "--profile", "cpu", "--no-voice",
                      env=pulse_server.client_env(), timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith(("getting", "ready"))]
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr
    problem = [line for line in lines if "no such mic" in line]
    assert len(problem) == 1 and "micfeed.monitor" in problem[0] and "room.monitor" in problem[0], proc.stderr


def test_doctor_names_the_microphone_and_speaker_it_would_use(pulse_server: PulseServer, native_config: Path) -> None:
    proc = run_saijin("doctor", "--json", "--config", str(native_config), "--profile", "cpu",
                      env=pulse_server.client_env(), timeout=120)
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert checks["audio microphone"]["status"] == "PASS", checks
    assert "micfeed.monitor" in checks["audio microphone"]["detail"], checks["audio microphone"]
    assert checks["audio speaker"]["status"] == "PASS" and "(room," in checks["audio speaker"]["detail"], checks

    edit_yaml(native_config / "assistant.yaml", {"audio": {"output_device": "no such speaker"}})
    proc = run_saijin("doctor", "--json", "--config", str(native_config), "--profile", "cpu",
                      env=pulse_server.client_env(), timeout=120)
    speaker = {c["name"]: c for c in json.loads(proc.stdout)}["audio speaker"]
    assert proc.returncode == 1 and speaker["status"] == "FAIL" and "room" in speaker["detail"], speaker
