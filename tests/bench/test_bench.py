"""`saijin bench`: spoken turns through the real pipeline (cpu profile) give sane figures, JSON and a plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.bench.pipeline import TurnTimeline

ROOT = Path(__file__).resolve().parents[2]


def test_overhead_is_the_window_not_covered_by_stage_work() -> None:
    t = TurnTimeline(turn_id=1, speech_end=10.0, decided_at=10.3, first_play_at=12.0, outcome="done")
    t.intervals = {
        "asr_wait": (10.1, 10.4), "asr": (10.4, 10.9), "emotion": (10.1, 10.2),  # overlaps: counted once
        "prompt": (10.901, 10.903),
        "first_sentence": (10.904, 11.5), "llm_first_token": (10.904, 11.2),
        "tts_first_audio": (11.5005, 11.998),
    }
    t.first_audio_at, t.last_audio_at = 11.9985, 13.0
    gaps = t.gaps()
    # Work covers [0, 900], [901, 903], [904, 1500], [1500.5, 1998] ms; the rest is the pipeline's own.
    assert [round(b - a, 2) for a, b in gaps] == [1.0, 1.0, 0.5, 2.0]
    assert t.overhead_ms == pytest.approx(4.5, abs=1e-6)
    assert t.voice_to_voice_ms == pytest.approx(2000.0)
    assert t.first_audio_ratio == pytest.approx(1998.5 / 3000.0)
    assert t.stage_intervals()["playback_start"] == pytest.approx((1998.5, 2000.0))


def test_without_a_first_sentence_the_whole_llm_stream_is_work() -> None:
    t = TurnTimeline(turn_id=1, speech_end=0.0, decided_at=0.3, first_play_at=2.0, outcome="done")
    t.intervals = {"asr": (0.3, 1.0), "llm_total": (1.0, 1.5), "tts_first_audio": (1.5, 2.0)}
    assert t.overhead_ms == pytest.approx(0.0, abs=1e-6)


def test_bench_command_measures_spoken_turns(config_dir: Path, tmp_path: Path) -> None:
    out, plot = tmp_path / "out.json", tmp_path / "waterfall.png"
    command = [sys.executable, "-m", "assistant", "bench", "--turns", "2", "--json", str(out), "--plot", str(plot),
               "--profile", "cpu", "--config", str(config_dir)]
    done = subprocess.run(command, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "voice to voice" in done.stdout

    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["turns"] == 2
    v2v = figures["voice_to_voice_ms"]
    assert 0 < v2v["p50"] <= v2v["p95"] < 120_000
    stages = figures["stages_ms"]
    for name in ("end_of_speech", "asr", "emotion", "llm_first_token", "first_sentence", "tts_first_audio",
                 "playback_start"):
        assert set(stages[name]) >= {"p50", "p95"}, name
        assert 0 <= stages[name]["p50"] <= stages[name]["p95"], name
    # The VAD waits its hangover (300 ms in config/assistant.yaml) after the real end of speech.
    assert 250 <= stages["end_of_speech"]["p50"] < 2000
    for turn in figures["per_turn"]:
        turn_stages = turn["stages_ms"]
        assert turn_stages["llm_first_token"] <= turn_stages["first_sentence"] < turn["voice_to_voice_ms"]
        assert turn["overhead_ms"] >= 0 and 0 < turn["first_audio_ratio"] <= 1
    assert stages["first_sentence"]["p50"] < v2v["p50"]
    assert 0 <= figures["overhead_ms"]["p50"] < v2v["p50"] / 2
    assert 0 < figures["first_audio_ratio"]["p50"] <= 1.0
    machine = figures["machine"]
    assert machine["cpu_count"] >= 1 and machine["profile"] == "cpu"
    assert "whisper-base" in machine["models"]["asr"] and machine["models"]["llm"]["kind"] == "embedded"
    # Both samples were heard and answered; the memory of the run stayed out of the config's data folder.
    heard = [turn["heard"] for turn in figures["per_turn"]]
    assert any("疲れ" in text for text in heard) and any("nice" in text.lower() for text in heard), heard
    assert all(turn["reply"] for turn in figures["per_turn"])
    assert not (config_dir.parent / "data" / "memory.db").exists()

    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.stat().st_size > 10_000


def test_bench_refuses_zero_turns(config_dir: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "assistant", "bench", "--turns", "0", "--config", str(config_dir)],
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--turns 0" in done.stderr and "Traceback" not in done.stderr
