"""The status view: engine states, machine figures and voice-to-voice latency from data/latency.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from assistant.cli.main import main
from assistant.config.loader import load_settings
from assistant.events import Latency
from assistant.ops.status import collect_status, latency_path, latency_summary, render
from tests.fixtures.vllm import free_port


def test_latency_p50_p95_over_recent_turns(tmp_path: Path):
    path = tmp_path / "latency.jsonl"
    values = [400.0 + 10 * i for i in range(80)]
    lines = [Latency(turn_id=i, stages_ms={"asr": 80.0}, voice_to_voice_ms=v).to_json() for i, v in enumerate(values)]
    lines.insert(3, "not json")
    lines.append(Latency(turn_id=99, stages_ms={}, voice_to_voice_ms=None).to_json())
    lines.append(json.dumps({"type": "subtitle", "voice_to_voice_ms": 1}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = latency_summary(path, window=50)
    assert summary is not None and summary.turns == 50
    recent = values[-50:]
    assert summary.p50_ms == float(np.percentile(recent, 50))
    assert summary.p95_ms == float(np.percentile(recent, 95))
    assert latency_summary(tmp_path / "missing.jsonl") is None


async def test_status_of_engines_and_machine(config_dir: Path, routing_writer, monkeypatch):
    monkeypatch.setenv("SAIJIN_GPU_MEMORY_GB", "12")
    port = free_port()
    routing_writer({"AI_1": {"kind": "vllm", "base_url": f"http://127.0.0.1:{port}/v1", "model": "swallow-8b",
                             "launch": {"port": port}}})
    settings = load_settings(config_dir, "none")
    path = latency_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(Latency(turn_id=1, voice_to_voice_ms=640.0).to_json() + "\n")
    report = await collect_status(settings)
    states = {e.name: e.state for e in report.engines}
    assert states == {"AI_1": "down", "AI_2": "embedded"}
    assert report.ram_total_bytes > report.ram_used_bytes > 0
    assert report.gpus[0].total_gb == 12
    assert report.latency is not None and report.latency.p50_ms == 640.0
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render(report))
    text = console.export_text()
    assert "AI_1" in text and "down" in text and "p50 640 ms" in text and "12.0 GB" in text


def test_status_json_command(config_dir: Path, capsys):
    assert main(["status", "--json", "--config", str(config_dir), "--profile", "cpu"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {e["name"] for e in data["engines"]} == {"AI_1", "AI_2", "AI_3", "AI_4"}  # every engine of routing.yaml
    assert data["ram"]["total_bytes"] > 0
