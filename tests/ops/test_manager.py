"""The engine manager with REAL vLLM CPU engines: on-demand starts, the VRAM budget, least-recently-used
eviction, idle stops, adopting a server that already runs; Ollama through keep_alive."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import psutil
import pytest

from assistant.config.loader import load_settings
from assistant.errors import EngineUnavailable
from assistant.ops.engines import probe_engine_async
from assistant.ops.manager import EngineManager
from tests.fixtures.ops import ollama_standin, tiny_vllm_engine
from tests.fixtures.vllm import free_port


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def _chat(base_url: str, model: str) -> int:
    async with httpx.AsyncClient(timeout=60) as client:
        reply = await client.post(f"{base_url}/chat/completions", json={
            "model": model, "max_tokens": 3, "messages": [{"role": "user", "content": "ちょっと待ってね"}]})
    reply.raise_for_status()
    return reply.json()["usage"]["completion_tokens"]


@pytest.mark.slow
async def test_on_demand_engines_share_the_budget_and_the_least_recently_used_is_evicted(
        vllm_available, tiny_llama_dir: Path, config_dir: Path, routing_writer):
    ports = {name: free_port() for name in ("TINY_A", "TINY_B", "TINY_C")}
    utilization = {"TINY_A": 0.3, "TINY_B": 0.3, "TINY_C": 0.5}
    routing_writer({name: tiny_vllm_engine(tiny_llama_dir, port, name.lower(), resident=False, idle_stop_s=600,
                                           launch={"gpu_memory_utilization": utilization[name]})
                    for name, port in ports.items()}, default="AI_2", fallback=["AI_2"], vram_budget=0.95)
    manager = EngineManager(load_settings(config_dir, "none"), external_engines=[])
    said: list[str] = []
    try:
        # A and B fit together (0.6 of 0.95): both start, each announcing it once.
        await asyncio.gather(manager.ensure_ready("TINY_A", lambda: said.append("A")),
                             manager.ensure_ready("TINY_B", lambda: said.append("B")))
        assert sorted(said) == ["A", "B"]
        assert sorted(manager.running()) == ["TINY_A", "TINY_B"]
        assert await _chat(f"http://127.0.0.1:{ports['TINY_A']}/v1", "tiny_a") >= 1
        await manager.ensure_ready("TINY_A", lambda: said.append("A again"))  # already up: no announcement
        assert "A again" not in said

        manager.touch("TINY_B")
        await asyncio.sleep(0.05)
        manager.touch("TINY_A")  # B is now the least recently used
        pid_a, pid_b = manager.slots["TINY_A"].process.pid, manager.slots["TINY_B"].process.pid

        # C (0.5) does not fit beside both: B goes, A stays.
        await manager.ensure_ready("TINY_C", lambda: said.append("C"))
        assert said[-1] == "C"
        assert sorted(manager.running()) == ["TINY_A", "TINY_C"]
        assert _gone(pid_b) and not _gone(pid_a)
        assert manager.used_budget() == pytest.approx(0.8)
        assert (await probe_engine_async(manager.slots["TINY_B"].engine, timeout=1)).state == "down"
        assert await _chat(f"http://127.0.0.1:{ports['TINY_C']}/v1", "tiny_c") >= 1

        # Idle engines stop after idle_stop_s.
        pid_c = manager.slots["TINY_C"].process.pid
        stopped = await manager.stop_idle(now=time.monotonic() + 601)
        assert sorted(stopped) == ["TINY_A", "TINY_C"]
        assert _gone(pid_a) and _gone(pid_c) and manager.running() == []
    finally:
        await manager.stop()
    for slot in manager.slots.values():
        assert slot.process is None


@pytest.mark.slow
async def test_a_running_server_is_adopted_not_started_and_the_budget_is_kept(
        vllm_server, tiny_llama_dir: Path, config_dir: Path, routing_writer):
    port = free_port()
    routing_writer({
        "AI_1": tiny_vllm_engine(tiny_llama_dir, vllm_server.port, vllm_server.model, resident=True,
                                 launch={"gpu_memory_utilization": 0.8}),
        "AI_3": tiny_vllm_engine(tiny_llama_dir, port, "big", resident=False, launch={"gpu_memory_utilization": 0.5}),
    }, default="AI_1", fallback=["AI_1", "AI_2"])
    manager = EngineManager(load_settings(config_dir, "none"), external_engines=[])
    said: list[str] = []
    try:
        failures = await manager.start()
        assert failures == {}
        assert manager.running() == ["AI_1"] and manager.slots["AI_1"].adopted
        await manager.ensure_ready("AI_1", lambda: said.append("AI_1"))
        await manager.ensure_ready("AI_2", lambda: said.append("AI_2"))  # embedded: nothing to do
        assert said == []
        with pytest.raises(EngineUnavailable, match=r"budget 0\.95"):
            await manager.ensure_ready("AI_3", lambda: said.append("AI_3"))
        assert said == [] and manager.slots["AI_3"].process is None
    finally:
        await manager.stop()
    assert vllm_server.is_alive()  # never stopped by the manager that adopted it


async def test_ollama_models_load_and_unload_through_keep_alive(config_dir: Path, routing_writer):
    with ollama_standin() as (base, requests):
        routing_writer({"OLLAMA": {"kind": "ollama", "base_url": base, "model": "qwen2.5:7b", "resident": False,
                                   "keep_alive": "15m", "idle_stop_s": 60}}, default="AI_2", fallback=["AI_2"])
        manager = EngineManager(load_settings(config_dir, "none"))
        said: list[str] = []
        try:
            await manager.ensure_ready("OLLAMA", lambda: said.append("loading"))
            await manager.ensure_ready("OLLAMA", lambda: said.append("again"))
            assert said == ["loading"]
            assert await manager.stop_idle(now=time.monotonic() + 61) == ["OLLAMA"]
        finally:
            await manager.stop()
    assert requests == [
        {"path": "/api/generate", "model": "qwen2.5:7b", "keep_alive": "15m"},
        {"path": "/api/generate", "model": "qwen2.5:7b", "keep_alive": 0},
    ]
