"""Soak: hundreds of turns in one process with the real models; memory, tasks, threads and files stay flat.

Typed turns (mostly English, some Japanese) go through ``Conversation.say`` and every twentieth turn is spoken
(a sample WAV through VAD, Whisper and emotion); every reply is spoken by the real voices to a NullSink that
does not wait for the audio clock. Turns: ``$SAIJIN_SOAK_TURNS`` (default 300). The figures are printed and,
with ``$SAIJIN_SOAK_REPORT=FILE``, written as JSON.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import gc
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from assistant.bench.pipeline import BenchConversation, TimelineRecorder, play_turn
from assistant.bench.samples import sample_utterances
from assistant.config import load_settings
from assistant.pipeline.assemble import Options

pytestmark = pytest.mark.slow

TURNS = int(os.environ.get("SAIJIN_SOAK_TURNS", "300"))
#: Turns before the baseline is taken: model loads, caches, thread pools, the first summaries and the heap
#: (glibc keeps freed native memory from ONNX/llama.cpp/CTranslate2: RSS levels off after ~40-80 turns).
WARMUP = min(max(10, min(40, TURNS // 6)), TURNS - 1)
#: Short replies keep 300 turns affordable on two cores (the embedded model writes ~35 tokens/s).
MAX_TOKENS = 12

ENGLISH = ("How was your day?", "Tell me about the rain.", "I made some tea.", "Do you like old books?",
           "It is cold tonight.", "I went for a walk.", "What should I cook?", "I saw a cat today.")
JAPANESE = ("今日は雨だったね。", "紅茶をいれたよ。", "ちょっと眠いな。")


def _kind(index: int) -> str:
    """Spoken every twentieth turn (from the 11th), Japanese text every twentieth (from the first), else
    English text (Kokoro, the Japanese voice, is the slow one on a CPU)."""
    if index % 20 == 10:
        return "voice"
    return "ja" if index % 20 == 0 else "en"


def _thread_kinds() -> collections.Counter[str]:
    """Threads by kind (the name without its number): a leak shows as a kind that keeps growing."""
    return collections.Counter(re.sub(r"[_-]?\d+$", "", t.name) or t.name for t in threading.enumerate())


def _task_kinds() -> collections.Counter[str]:
    return collections.Counter(re.sub(r"\d+", "N", t.get_name()) for t in asyncio.all_tasks())


async def _settle(conversation: BenchConversation) -> None:
    """Wait until nothing is in flight: the pipeline idle and no background summary running."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        await conversation.pipeline.wait_idle()
        if not any(t.get_name().startswith("summary:") for t in asyncio.all_tasks()):
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.3)
    gc.collect()


def _snapshot(process: psutil.Process) -> dict[str, Any]:
    return {"rss_mb": _rss_mb(process), "threads": _thread_kinds(), "tasks": _task_kinds(),
            "fds": process.num_fds(), "files": sorted(f.path for f in process.open_files()),
            "python_objects": len(gc.get_objects())}


def _rss_mb(process: psutil.Process) -> float:
    return round(process.memory_info().rss / 2**20, 1)


def _trimmed_rss_mb(process: psutil.Process) -> float | None:
    """RSS after glibc hands freed heap back to the system: what is left is memory still in use."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return None
    return _rss_mb(process)


async def test_soak_many_turns_stay_flat(config_dir: Path) -> None:
    settings = load_settings(config_dir, "cpu")
    for engine in settings.routing.engines.values():
        engine.generation.max_tokens = MAX_TOKENS
    samples = await asyncio.to_thread(sample_utterances)
    process = psutil.Process()
    options = Options(input="feed", output="file", is_realtime=False, use_memory=True)
    conversation = BenchConversation(settings, options)
    recorder = TimelineRecorder()
    conversation.bus.subscribe(recorder)
    counts: collections.Counter[str] = collections.Counter()
    seconds: collections.Counter[str] = collections.Counter()
    problems: list[str] = []
    checkpoints: list[tuple[int, float]] = []
    started = time.monotonic()
    baseline: dict[str, Any] = {}
    async with conversation:
        for index in range(TURNS):
            kind = _kind(index)
            turn_started = time.monotonic()
            if kind == "voice":
                sample = samples[(index // 10) % len(samples)]
                opened = await play_turn(conversation, recorder, sample, timeout=180)
                if not any(t.outcome == "done" and t.heard for t in opened):
                    problems.append(f"turn {index}: voice turn not answered: {[(t.outcome, t.heard) for t in opened]}")
                recorder.forget_ended()
            else:
                lines = JAPANESE if kind == "ja" else ENGLISH
                result = await conversation.say(lines[index % len(lines)], timeout=180)
                if result.errors or not result.sentences:
                    problems.append(f"turn {index}: {kind} turn: errors {result.errors}, reply {result.reply!r}")
            counts[kind] += 1
            seconds[kind] += time.monotonic() - turn_started
            if index + 1 == WARMUP:
                await _settle(conversation)
                baseline = _snapshot(process)
                warm_at = time.monotonic()
            if (index + 1) % 25 == 0:
                checkpoints.append((index + 1, _rss_mb(process)))
        await _settle(conversation)
        final = _snapshot(process)
        ended = time.monotonic()
        trimmed = _trimmed_rss_mb(process)  # after the measurement: a diagnostic, not part of the check

    growth = (final["rss_mb"] - baseline["rss_mb"]) / baseline["rss_mb"]
    report = {
        "turns": TURNS, "kinds": dict(counts), "warmup_turns": WARMUP, "max_tokens": MAX_TOKENS,
        "wall_s": round(ended - started, 1), "measured_s": round(ended - warm_at, 1),
        "s_per_turn": {kind: round(seconds[kind] / counts[kind], 2) for kind in counts},
        "rss_mb": {"after_warmup": baseline["rss_mb"], "end": final["rss_mb"], "growth": round(growth, 4),
                   "end_after_malloc_trim": trimmed},
        "python_objects": {"after_warmup": baseline["python_objects"], "end": final["python_objects"]},
        "rss_checkpoints_mb": checkpoints,
        "threads": {"after_warmup": dict(baseline["threads"]), "end": dict(final["threads"])},
        "tasks": {"after_warmup": dict(baseline["tasks"]), "end": dict(final["tasks"])},
        "fds": {"after_warmup": baseline["fds"], "end": final["fds"]},
        "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "problems": problems[:20],
    }
    print("soak:", json.dumps(report, ensure_ascii=False))
    if os.environ.get("SAIJIN_SOAK_REPORT"):
        Path(os.environ["SAIJIN_SOAK_REPORT"]).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                                                          encoding="utf-8")

    assert len(problems) <= TURNS // 50, f"{len(problems)} turns went wrong: {problems[:5]}"
    assert growth < 0.10, f"resident memory grew {growth:.1%} after warm-up: {checkpoints}"
    # The default executor (asyncio_N) may still grow up to its fixed maximum; nothing else may grow.
    executor_max = min(32, (os.cpu_count() or 1) + 4)
    for kind, count in final["threads"].items():
        limit = max(baseline["threads"].get(kind, 0), executor_max if kind == "asyncio" else 0)
        assert count <= limit, f"threads {kind!r}: {baseline['threads'].get(kind, 0)} after warm-up, {count} at the end"
    extra_tasks = final["tasks"] - baseline["tasks"]
    assert not extra_tasks, f"asyncio tasks leaked: {dict(extra_tasks)} more than after warm-up ({baseline['tasks']})"
    assert final["fds"] <= baseline["fds"], f"open files leaked: {baseline['files']} -> {final['files']}"
