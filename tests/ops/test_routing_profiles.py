"""The seed's engines: routing.yaml ships AI_1..AI_4, profiles/ollama.yaml maps the seed's Ollama models with its
resident / on-demand split, and the engine manager loads exactly the resident ones at start, the code model when
a persona needs it (saying its wait line once) and gives it back when idle — against a recording Ollama stand-in."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from assistant.config.loader import load_settings
from assistant.ops.doctor import run_doctor
from assistant.ops.manager import EngineManager
from tests.fixtures.ops import ollama_standin

SEED_MODELS = {"Miyu", "MiyuJP", "llama3.1:8b-instruct", "qwen2.5:7b-instruct", "tinyllama", "phi3:mini", "gemma2:2b",
               "starcoder2:3b", "deepseek-coder:1.3b"}
SEED_RESIDENT = {"Miyu", "MiyuJP", "llama3.1:8b-instruct", "phi3:mini"}


def test_routing_ships_the_four_engines(config_dir: Path):
    engines = load_settings(config_dir, "gpu").routing.engines
    assert {n: e.kind for n, e in engines.items() if n.startswith("AI_")} == {
        "AI_1": "vllm", "AI_2": "embedded", "AI_3": "ollama", "AI_4": "ollama"}
    assert engines["AI_1"].resident and not engines["AI_3"].resident and engines["AI_4"].resident
    assert engines["AI_3"].model in ("deepseek-coder:1.3b", "starcoder2:3b")
    assert engines["AI_4"].model in ("phi3:mini", "gemma2:2b")


def test_the_ollama_profile_maps_the_seed_with_its_resident_split(config_dir: Path):
    settings = load_settings(config_dir, "ollama")
    ollama = {e.model: e for e in settings.routing.engines.values() if e.kind == "ollama"}
    assert set(ollama) == SEED_MODELS
    assert {m for m, e in ollama.items() if e.resident} == SEED_RESIDENT
    assert all(e.launch is None for e in ollama.values())
    vllm = [c for c in run_doctor(settings) if c.name.startswith(("VRAM", "vLLM"))]
    assert [(c.name, c.status) for c in vllm] == [("vLLM", "PASS")] and "no vLLM engine in use" in vllm[0].detail


async def test_the_manager_keeps_the_residents_and_loads_the_code_model_on_demand(config_dir: Path):
    with ollama_standin() as (url, requests):
        for name in ("routing.yaml", "profiles/ollama.yaml"):
            path = config_dir / name
            path.write_text(path.read_text(encoding="utf-8").replace("http://127.0.0.1:11434/v1", url),
                            encoding="utf-8")
        # The seed's コードちゃん♫: a persona whose own engine is the code model.
        persona = yaml.safe_load((config_dir / "personas" / "miyu.yaml").read_text(encoding="utf-8"))
        persona.update(id="code", engine="AI_3")
        (config_dir / "personas" / "code.yaml").write_text(yaml.safe_dump(persona, allow_unicode=True),
                                                          encoding="utf-8")
        manager = EngineManager(load_settings(config_dir, "ollama"))
        said: list[str] = []
        try:
            assert await manager.start() == {}
            loaded = {r["model"] for r in requests}
            assert {"MiyuJP", "Miyu", "phi3:mini"} <= loaded and "deepseek-coder:1.3b" not in loaded
            assert all(r["keep_alive"] == -1 for r in requests if r["model"] in SEED_RESIDENT)
            requests.clear()
            await manager.ensure_ready("AI_3", lambda: said.append("ちょっと待ってね"))
            await manager.ensure_ready("AI_3", lambda: said.append("again"))
            assert said == ["ちょっと待ってね"]
            assert await manager.stop_idle(now=time.monotonic() + 301) == ["AI_3"]  # residents stay
        finally:
            await manager.stop()
    assert requests[:2] == [{"path": "/api/generate", "model": "deepseek-coder:1.3b", "keep_alive": "5m"},
                            {"path": "/api/generate", "model": "deepseek-coder:1.3b", "keep_alive": 0}]
