"""Durability through the real process (issue 6): `saijin chat`, fed lines on stdin, answering with the embedded
model and writing its memory database (summaries too, in the background), is killed with SIGKILL at random
moments. After every kill the database opens as the restarted assistant opens it, says `ok` to
PRAGMA integrity_check, and holds every user turn whose reply had started (its first words were printed)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from assistant.config import load_settings
from assistant.memory.store import MemoryStore
from tests.memory.durability import durability_trials, run_and_kill
from tests.reliability.conftest import ROOT, edit_yaml, saijin_argv, saijin_env

pytestmark = pytest.mark.slow

PROMPT = "悠璃> "  # what `saijin chat` prints as the persona's first words arrive
TOPICS = ("紅茶", "雨の音", "古い本", "散歩", "猫", "星空", "朝ごはん", "音楽", "季節", "旅行", "夢", "仕事")


def _reply_started(line: str) -> int | None:
    """A stdout line on which at least one reply began (the persona's name, then words)."""
    return line.count(PROMPT) or None


def _lines(trial: int) -> list[str]:
    return [f"{trial}回目の{i}番目の話です。{TOPICS[(trial + i) % len(TOPICS)]}について聞いてください。"
            for i in range(len(TOPICS))]


def test_every_turn_whose_reply_started_survives_kill_9_of_saijin_chat(quiet_config: Path) -> None:
    # Short replies, and a rolling summary every three turns, so kills also land while a summary is written.
    edit_yaml(quiet_config / "assistant.yaml", {"memory": {"summary_every": 3}})
    edit_yaml(quiet_config / "profiles" / "cpu.yaml",
              {"routing": {"engines": {"AI_2": {"kind": "embedded", "model": "offline:gemma3-270m",
                                                "generation": {"max_tokens": 16}}}}})
    settings = load_settings(quiet_config, "cpu")
    db = settings.data_path(settings.assistant.memory.database)
    argv = saijin_argv("chat", "--persona", "yuuri", "--no-voice", "--config", str(quiet_config), "--profile", "cpu")
    env = saijin_env()
    rng = random.Random(20261122)
    trials = durability_trials()
    acknowledged_total = mid_conversation = 0
    for trial in range(trials):
        lines = _lines(trial)
        # A third of the kills land anywhere from start-up on (opening, migrating, loading the model);
        # the rest while the conversation runs, at a random moment after the first reply began.
        after_first = trial % 3 != 0
        delay = rng.uniform(0.0, 2.5) if after_first else rng.uniform(0.2, 6.0)
        result = run_and_kill(argv, kill_after_s=delay, after_first_ack=after_first, parse_ack=_reply_started,
                              env=env, cwd=ROOT, stdin_text="\n".join(lines) + "\n", timeout_s=180)
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        started = sum(line.count(PROMPT) for line in result.stdout)
        with MemoryStore(db) as store:  # what the restarted assistant finds
            integrity = store.integrity_check()
            users = {t.text for t in store.turns("yuuri") if t.role == "user"}
        assert integrity == "ok", f"trial {trial}: {integrity}"
        lost = [line for line in lines[:started] if line not in users]
        assert not lost, (f"trial {trial} (killed after {result.killed_after_s:.2f} s): {len(lost)} of {started} "
                          f"answered turns lost: {lost[:3]}")
        acknowledged_total += started
        mid_conversation += result.was_killed and started > 0
    print(f"{trials} kills, {mid_conversation} mid-conversation, {acknowledged_total} answered turns checked")
    # The kills did land while the conversation was going, not only before it began.
    assert mid_conversation >= trials // 2, f"only {mid_conversation} of {trials} kills came mid-conversation"
    assert acknowledged_total >= trials
    with MemoryStore(db) as store:
        assert store.turn_count("yuuri") >= acknowledged_total
