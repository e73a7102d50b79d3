"""`saijin run --mode bedtime --input some.wav --output bed.wav`: the reply is measurably slower and quieter
than the same run in normal mode (issue 7, done-when), through the real command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assistant.audio.wavfile import read_wav
from tests.fixtures.core import english_piper_setup, saijin

pytestmark = pytest.mark.slow


def _run(mode: str, source: Path, tmp_path: Path, config_dir: Path) -> tuple[np.ndarray, str]:
    out, events = tmp_path / f"{mode}.wav", tmp_path / f"{mode}.jsonl"
    proc = saijin("run", "--mode", mode, "--input", str(source), "--output", str(out), "--events", str(events),
                  "--config", str(config_dir), "--profile", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    logged = [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()]
    spoken = "".join(e["text"] for e in logged if e["type"] == "subtitle")
    assert spoken, proc.stdout
    return read_wav(out), spoken


def _speech_rms(samples: np.ndarray) -> float:
    frames = samples[: len(samples) // 320 * 320].reshape(-1, 320)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    voiced = rms[rms > 0.01 * rms.max()]
    return float(np.sqrt(np.mean(voiced**2)))


def test_bedtime_reply_is_slower_and_quieter(speech_maker, tmp_path: Path, config_dir: Path) -> None:
    pytest.importorskip("llama_cpp")
    english_piper_setup(config_dir)
    clip = speech_maker.english("Good evening. I had a really long day today.")
    source = speech_maker.compose(0.8, clip, 1.5).write(tmp_path / "in.wav")
    normal, normal_text = _run("normal", source, tmp_path, config_dir)
    bedtime, bedtime_text = _run("bedtime", source, tmp_path, config_dir)
    # Seconds of audio per spoken character (the replies' words differ: the bedtime prompt is another).
    normal_pace = len(normal) / 16000 / len(normal_text)
    bedtime_pace = len(bedtime) / 16000 / len(bedtime_text)
    assert bedtime_pace > 1.15 * normal_pace, (normal_pace, bedtime_pace, normal_text, bedtime_text)
    assert _speech_rms(bedtime) < 0.75 * _speech_rms(normal)
