"""Soak: many turns in one process with the real models; memory, tasks, threads and files stay flat.

The CI soak is short (``$SAIJIN_SOAK_TURNS``, default 48: 10 warm-up turns, then 38 measured, two of them
spoken); it runs the same pipeline and the same checks as the long one, ``python -m assistant.bench.soak
--turns 300`` (see docs/benchmarks.md): every turn answered, resident memory under +10 % of the warm-up
figure, no thread, task or open file more than after the warm-up. The leak rate of native memory in use
(glibc's ``mallinfo2``, least-squares slope per turn) is reported here and judged only by the long soak:
over 38 turns the embedded engine's saved prompt states still grow with the conversation (~1.2 MB a turn
measured, bounded by the context size), which a short run cannot tell from a leak. With ``$SAIJIN_SOAK_REPORT=FILE`` the figures are
written as JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from assistant.bench.soak import SoakOptions, flatness_problems, run_soak, slope, turn_kind, warmup_turns
from assistant.config import load_settings

pytestmark = pytest.mark.slow

TURNS = int(os.environ.get("SAIJIN_SOAK_TURNS", "48"))
#: A spoken turn every 20 (from the 11th) in the long soak; every 16 here, so the short run hears two.
VOICE_EVERY = 20 if TURNS >= 200 else 16


def test_the_leak_rate_is_the_slope_of_memory_in_use() -> None:
    assert slope([(10, 500.0), (11, 500.0), (12, 500.0)]) == 0.0
    assert slope([(10, 500.0), (11, 500.5), (12, 501.0), (13, 501.5)]) == pytest.approx(0.5)
    # Noise around a flat line is not a leak; a level-off step early on counts far less than a steady climb.
    assert abs(slope([(i, 500.0 + (0.8 if i % 2 else -0.8)) for i in range(40)]) or 0) < 0.05
    assert slope([(1, 1.0), (2, 2.0)]) is None


def test_the_short_soak_warms_up_then_measures_every_kind_of_turn() -> None:
    assert warmup_turns(48) == 10 and warmup_turns(300) == 40 and warmup_turns(5) == 4
    kinds = [turn_kind(i, VOICE_EVERY) for i in range(TURNS)]
    measured = kinds[warmup_turns(TURNS):]
    assert {"voice", "ja", "en"} <= set(measured), kinds


async def test_soak_many_turns_stay_flat(config_dir: Path) -> None:
    settings = load_settings(config_dir, "cpu")
    options = SoakOptions(turns=TURNS, voice_every=VOICE_EVERY, isolate_data=False)
    report = await run_soak(settings, options)
    figures = report.to_dict()
    print("soak:", json.dumps(figures, ensure_ascii=False))
    if os.environ.get("SAIJIN_SOAK_REPORT"):
        Path(os.environ["SAIJIN_SOAK_REPORT"]).write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n",
                                                          encoding="utf-8")
    assert report.kinds.get("voice", 0) >= 1 and report.in_use, figures["kinds"]
    problems = flatness_problems(report)
    assert not problems, "\n".join(problems)
