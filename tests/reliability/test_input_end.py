"""The input source ends: `saijin run --input FILE.wav` answers every turn in the file — the last one even when
the file stops in the middle of speech — writes the replies, and exits 0."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from assistant.audio.wavfile import read_wav, write_wav
from tests.reliability.conftest import (
    RATE,
    edit_yaml,
    english_speech,
    run_saijin,
    use_fast_voices,
    with_silence,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("tail_s", [1.5, 0.0], ids=["pause-at-end", "ends-mid-speech"])
def test_run_from_a_wav_answers_the_last_turn_and_exits_0(tail_s: float, quiet_config: Path, tmp_path: Path,
                                                          hello_speech: np.ndarray) -> None:
    use_fast_voices(quiet_config)
    edit_yaml(quiet_config / "profiles" / "cpu.yaml", {
        "assistant": {"asr": {"model": "offline:whisper-tiny.en", "language": "en"}},
        "routing": {"engines": {"AI_2": {"kind": "embedded", "model": "offline:gemma3-270m",
                                         "generation": {"max_tokens": 24}}}},
    })
    question = english_speech("Tell me about the weather tomorrow.")
    source = write_wav(tmp_path / "in.wav", with_silence(0.3, hello_speech, 2.0, question, tail_s), RATE)
    out = tmp_path / "out.wav"
    events = tmp_path / "events.jsonl"
    proc = run_saijin("run", "--input", str(source), "--output", str(out), "--events", str(events),
                      "--config", str(quiet_config), "--profile", "cpu", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "error" not in proc.stdout.lower(), proc.stdout + proc.stderr
    heard = dict(re.findall(r"^\[turn (\d+)\] you[^:]*: (.+)$", proc.stdout, flags=re.M))
    replied = {turn for turn, _ in re.findall(r"^\[turn (\d+)\] 悠璃: (.+)$", proc.stdout, flags=re.M)}
    # (When the first reply is not audible yet as the second utterance starts, the two merge into one turn.)
    last = max(heard, key=int)
    assert "hello" in heard[min(heard, key=int)].lower() and "weather" in heard[last].lower(), heard
    # Every reply was written out before the exit: the file holds all the audio the events log announced.
    logged = [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()]
    # The last turn was answered before the exit: with words, or (a small base model may say nothing
    # speakable to it) with the notice that its engine answered nothing that can be spoken.
    said = {str(event["turn_id"]) for event in logged if event["type"] == "subtitle"}
    noticed = {str(event["turn_id"]) for event in logged if event["type"] == "notice" and event.get("turn_id")}
    assert last in said | noticed, f"the last turn was not answered before the exit: {proc.stdout}"
    assert (last in replied) == (last in said), proc.stdout
    # A reply the second utterance barged into was cut: only turns that were not interrupted play in full.
    cut = {event["turn_id"] for event in logged if event["type"] == "interrupted"}
    audio_s = sum(len(event.get("mouth", [])) * 0.02 for event in logged
                  if event["type"] == "audio" and event["turn_id"] not in cut)
    written = read_wav(out, sample_rate=RATE)
    assert audio_s > 0.5
    assert len(written) / RATE >= audio_s - 0.5, f"{len(written) / RATE:.1f} s written, {audio_s:.1f} s spoken"
