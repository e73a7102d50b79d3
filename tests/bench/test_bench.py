"""`saijin bench`: spoken turns through the real pipeline (cpu profile) give sane figures, JSON and a plot."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.bench.pipeline import (
    BenchOptions,
    BenchRun,
    TurnTimeline,
    bench_language,
    configured,
    parse_voice,
    summarize,
)
from assistant.bench.samples import bench_specs
from assistant.cli.bench_cmd import _voices
from assistant.config import load_settings
from assistant.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]


def _turn(turn_id: int, language: str, v2v_s: float, sentences: int) -> TurnTimeline:
    t = TurnTimeline(turn_id=turn_id, speech_end=0.0, decided_at=0.3, first_play_at=v2v_s, outcome="done",
                     language=language, sentence_count=sentences)
    t.intervals = {"asr": (0.3, 0.5), "first_sentence": (0.5, v2v_s - 0.2), "tts_first_audio": (v2v_s - 0.2, v2v_s)}
    t.first_audio_at, t.last_audio_at = v2v_s, v2v_s * 2
    return t


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


def test_figures_come_per_language_with_the_first_turn_beside_the_median() -> None:
    measured = [_turn(3, "ja", 1.4, 3), _turn(4, "en", 0.9, 1), _turn(5, "ja", 1.6, 2), _turn(6, "en", 1.1, 2),
                _turn(7, "ja", 1.5, 1)]
    first = [_turn(1, "ja", 2.0, 2), _turn(2, "en", 1.0, 1)]
    summary = summarize(BenchRun(timelines=measured, skipped=[], machine={}, samples=[], first_turns=first))
    languages = summary["languages"]
    assert set(languages) == {"ja", "en", "both"}
    assert languages["ja"]["voice_to_voice_ms"]["p50"] == pytest.approx(1500.0)
    assert languages["en"]["voice_to_voice_ms"]["p50"] == pytest.approx(1000.0)
    assert languages["both"]["voice_to_voice_ms"]["p50"] == pytest.approx(1400.0)
    assert (languages["ja"]["first_turn_ms"], languages["en"]["first_turn_ms"]) == (2000.0, 1000.0)
    assert summary["first_turn_ms"] == 2000.0 and summary["first_turn_id"] == 1
    # The first-audio ratio counts replies of two or more sentences only (each here: first audio at half).
    assert languages["ja"]["multi_sentence_turns"] == 2 and languages["en"]["multi_sentence_turns"] == 1
    assert summary["first_audio_ratio"] == {"p50": 0.5, "p95": 0.5}
    by_id = {turn["turn_id"]: turn for turn in summary["per_turn"]}
    assert by_id[4]["first_audio_ratio"] is None and by_id[3]["first_audio_ratio"] == 0.5


def test_one_language_has_no_both_column() -> None:
    summary = summarize(BenchRun(timelines=[_turn(1, "en", 0.6, 2)], skipped=[], machine={}, samples=[]))
    assert set(summary["languages"]) == {"en"}


def test_the_language_picks_the_samples() -> None:
    assert {spec.language for spec in bench_specs("ja")} == {"ja"}
    assert {spec.language for spec in bench_specs("en")} == {"en"}
    both = bench_specs("both")
    assert [spec.language for spec in both[:4]] == ["ja", "en", "ja", "en"] and len(both) >= 6


def test_asr_and_voice_overrides_reach_every_persona(config_dir: Path) -> None:
    settings = load_settings(config_dir, "cpu")
    options = BenchOptions(asr_model="offline:whisper-tiny.en", language="en", voices={"": "offline:joe-us"})
    changed = configured(settings, options)
    assert changed.assistant.asr.model == "offline:whisper-tiny.en" and changed.assistant.asr.language == "en"
    for persona in changed.personas.values():
        assert (persona.voice.backend, persona.voice.voice) == ("piper", "offline:joe-us")
        assert persona.alt_voices == {}
    assert settings.assistant.asr.model == "offline:whisper-base"  # the loaded settings are left alone
    only_en = configured(settings, BenchOptions(voices={"en": "piper:en_US-lessac-medium"}))
    yuuri = only_en.personas["yuuri"]
    assert yuuri.voice == settings.personas["yuuri"].voice
    assert (yuuri.alt_voices["en"].backend, yuuri.alt_voices["en"].voice) == ("piper", "en_US-lessac-medium")


@pytest.mark.parametrize(("spec", "backend", "voice"), [
    ("offline:joe-us", "piper", "offline:joe-us"), ("offline:kokoro-ja", "kokoro", "offline:kokoro-ja"),
    ("kokoro:jf_nezumi", "kokoro", "jf_nezumi"), ("jf_alpha", "kokoro", "jf_alpha"),
    ("piper:/voices/a.onnx", "piper", "/voices/a.onnx"), ("en_US-lessac-medium", "piper", "en_US-lessac-medium"),
    ("vits:/models/vits", "vits", "/models/vits"),
])
def test_voice_values(spec: str, backend: str, voice: str) -> None:
    parsed = parse_voice(spec)
    assert (parsed.backend, parsed.voice) == (backend, voice)


def test_bad_bench_values_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="offline voice"):
        parse_voice("offline:whisper-base")
    with pytest.raises(UsageError, match="English only"):
        bench_language(BenchOptions(asr_model="offline:whisper-tiny.en", language="both"))
    with pytest.raises(UsageError, match="LANG"):
        _voices(["fr=offline:joe-us"])
    assert _voices(["offline:joe-us", "ja=kokoro:jf_alpha"]) == {"": "offline:joe-us", "ja": "kokoro:jf_alpha"}


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
        assert turn["overhead_ms"] >= 0
        ratio = turn["first_audio_ratio"]
        assert (ratio is None) == (turn["sentences"] < 2) and (ratio is None or 0 < ratio <= 1)
    assert stages["first_sentence"]["p50"] < v2v["p50"]
    assert 0 <= figures["overhead_ms"]["p50"] < v2v["p50"] / 2
    assert figures["first_audio_ratio"] is None or 0 < figures["first_audio_ratio"]["p50"] <= 1.0
    # Medians per language and over both; the first turn after start (a warm-up turn) beside them.
    languages = figures["languages"]
    assert set(languages) == {"ja", "en", "both"}
    assert languages["ja"]["turns"] == languages["en"]["turns"] == 1
    assert [turn["language"] for turn in figures["first_turns"]] == ["ja", "en"]
    assert all(languages[name]["first_turn_ms"] > 0 for name in ("ja", "en", "both"))
    assert "first turn after start" in done.stdout
    machine = figures["machine"]
    assert machine["cpu_count"] >= 1 and machine["profile"] == "cpu"
    assert "whisper-base" in machine["models"]["asr"] and machine["models"]["llm"]["kind"] == "embedded"
    # Both samples were heard and answered; the memory of the run stayed out of the config's data folder.
    heard = [turn["heard"] for turn in figures["per_turn"]]
    assert any("疲れ" in text for text in heard) and any("nice" in text.lower() for text in heard), heard
    assert all(turn["reply"] for turn in figures["per_turn"])
    assert not (config_dir.parent / "data" / "memory.db").exists()

    for drawn in (plot, tmp_path / "waterfall-ja.png", tmp_path / "waterfall-en.png"):
        assert drawn.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert drawn.stat().st_size > 10_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def openai_server() -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server with the real Qwen2.5 0.5B model (the package's GGUF)."""
    from assistant.models.offline import resolve_model

    model = resolve_model("offline:qwen2.5-0.5b-instruct")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", model, "--port", str(port),
                               "--n_ctx", "2048", "--n_threads", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, "llama_cpp.server exited"
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_same_work_as_other_frameworks_is_one_command(config_dir: Path, tmp_path: Path, openai_server: str) -> None:
    """Whisper tiny.en, Piper joe and an OpenAI-compatible server: English turns, one command."""
    out = tmp_path / "out.json"
    command = [sys.executable, "-m", "assistant", "bench", "--turns", "2", "--warmup", "0", "--json", str(out),
               "--profile", "cpu", "--config", str(config_dir), "--asr-model", "offline:whisper-tiny.en",
               "--voice", "offline:joe-us", "--llm-url", openai_server, "--llm-model", "qwen"]
    done = subprocess.run(command, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert set(figures["languages"]) == {"en"} and figures["turns"] == 2
    assert all(turn["language"] == "en" and turn["reply"] for turn in figures["per_turn"])
    assert "nice" in figures["per_turn"][0]["heard"].lower()
    models = figures["machine"]["models"]
    assert "whisper-tiny.en" in models["asr"] and "language en" in models["asr"]
    assert models["llm"] == {"engine": "override", "kind": "openai", "base_url": openai_server, "model": "qwen"}
    assert set(models["tts"].values()) == {"piper:offline:joe-us"}
    # Without warm-up turns the first measured turn is the first after start.
    assert figures["first_turn_id"] == figures["per_turn"][0]["turn_id"]


def test_bench_refuses_zero_turns(config_dir: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "assistant", "bench", "--turns", "0", "--config", str(config_dir)],
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--turns 0" in done.stderr and "Traceback" not in done.stderr
