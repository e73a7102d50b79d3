"""The default offline model answers companion prompts the way a companion does (real model, real persona
prompt): in the user's language, one to three short sentences, no echo of the user or of a remembered line,
no markup, no assistant boilerplate. Greedy decoding, so a failure is reproducible."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.bench.replies import PROMPTS, run_replies
from assistant.config import load_settings
from assistant.config.schema import GenerationConfig
from assistant.llm.embedded import EmbeddedEngine

ROOT = Path(__file__).resolve().parents[2]
SUBSET = ("ja-tired", "ja-question", "ja-fact", "ja-bedtime", "en-tired", "en-question", "en-anxious", "en-fact")


@pytest.mark.timeout(900)
@pytest.mark.xfail(reason="known gap (issue 13): with the reply guard, Qwen2.5-Coder-1.5B-Instruct still "
                          "answers the bedtime prompt in English and leaves some English replies empty (all "
                          "echo); see docs/benchmarks.md", strict=False)
async def test_the_default_model_replies_like_a_companion() -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is built by .ci/setup")
    settings = load_settings(ROOT / "config", "cpu")
    name = settings.routing.personas["yuuri"]
    config = settings.routing.engines[name]
    engine = EmbeddedEngine(name, config, settings.config_dir)
    generation = config.generation.model_copy(update={"temperature": 0.0})
    try:
        results = await run_replies(engine, settings, "yuuri", [p for p in PROMPTS if p.id in SUBSET],
                                    GenerationConfig.model_validate(generation.model_dump()))
    finally:
        await engine.aclose()
    failures = {r.prompt.id: (r.reply, r.problems) for r in results if r.problems}
    assert not failures, failures
