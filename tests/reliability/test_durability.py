"""Durability through the real process (issue 6): `saijin chat`, fed lines on stdin, answering with the embedded
model and writing its memory database (summaries too, in the background), is killed with SIGKILL at random
moments. After every kill the database opens as the restarted assistant opens it, says `ok` to
PRAGMA integrity_check, and holds every user turn whose reply had started (its first words were printed).

The kill moments are defined by what the process has done, not by the clock, so a slow or busy machine gets
the same coverage as a fast one: a third of the kills land at a random moment from start-up on (opening,
migrating, loading the model — on a slow CPU these mostly land before any reply), the rest a random moment
after the 1st to 4th reply began (so kills also land around the rolling summary written every three turns).
Trials go on until enough answered turns were checked, within a time budget."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from assistant.config import load_settings
from assistant.memory.store import MemoryStore
from tests.memory.durability import KillResult, durability_trials, run_and_kill
from tests.reliability.conftest import ROOT, edit_yaml, saijin_argv, saijin_env, use_fast_llm

pytestmark = pytest.mark.slow

PROMPT = "悠璃> "  # what `saijin chat` prints as the persona's first words arrive
#: Kill trials (``$SAIJIN_DURABILITY_TRIALS`` overrides); every kill is checked, however it landed.
TRIALS = 30
#: Answered turns that must have been checked across the trials, and kills that must have come mid-conversation.
ACKNOWLEDGED_MIN = 50
#: Extra mid-conversation trials stop after this many seconds in all (pytest-timeout is 600 s).
BUDGET_S = 480.0
TOPICS = ("紅茶", "雨の音", "古い本", "散歩", "猫", "星空", "朝ごはん", "音楽", "季節", "旅行", "夢", "仕事")


def _reply_started(line: str) -> int | None:
    """A stdout line on which at least one reply began (the persona's name, then words)."""
    return line.count(PROMPT) or None


def _lines(trial: int) -> list[str]:
    return [f"{trial}回目の{i}番目の話です。{TOPICS[(trial + i) % len(TOPICS)]}について聞いてください。"
            for i in range(len(TOPICS))]


def _check_trial(trial: int, lines: list[str], result: KillResult, db: Path) -> int:
    """The database after one kill: integrity ok and every answered user turn there; the answered count."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    started = sum(line.count(PROMPT) for line in result.stdout)
    with MemoryStore(db) as store:  # what the restarted assistant finds
        integrity = store.integrity_check()
        users = {t.text for t in store.turns("yuuri") if t.role == "user"}
    assert integrity == "ok", f"trial {trial}: {integrity}"
    lost = [line for line in lines[:started] if line not in users]
    assert not lost, (f"trial {trial} (killed after {result.killed_after_s:.2f} s): {len(lost)} of {started} "
                      f"answered turns lost: {lost[:3]}")
    return started


def _short_of(acknowledged: int, mid_conversation: int, wanted_mid: int) -> bool:
    """Fewer answered turns checked, or fewer mid-conversation kills, than the test needs to prove anything."""
    return acknowledged < ACKNOWLEDGED_MIN or mid_conversation < wanted_mid


def test_every_turn_whose_reply_started_survives_kill_9_of_saijin_chat(quiet_config: Path) -> None:
    # Short replies, and a rolling summary every three turns, so kills also land while a summary is written.
    edit_yaml(quiet_config / "assistant.yaml", {"memory": {"summary_every": 3}})
    use_fast_llm(quiet_config, max_tokens=16)
    settings = load_settings(quiet_config, "cpu")
    db = settings.data_path(settings.assistant.memory.database)
    argv = saijin_argv("chat", "--persona", "yuuri", "--no-voice", "--config", str(quiet_config), "--profile", "cpu")
    env = saijin_env()
    rng = random.Random(20261122)
    trials = durability_trials(TRIALS)
    wanted_mid = trials - trials // 3
    began = time.monotonic()
    acknowledged_total = mid_conversation = trial = 0
    while trial < trials or (_short_of(acknowledged_total, mid_conversation, wanted_mid)
                             and time.monotonic() - began < BUDGET_S):
        lines = _lines(trial)
        anywhere = trial < trials and trial % 3 == 0
        after_acks = 0 if anywhere else 1 + rng.randrange(4)
        delay = rng.uniform(0.2, 6.0) if anywhere else rng.uniform(0.0, 1.5)
        result = run_and_kill(argv, kill_after_s=delay, after_acks=after_acks, parse_ack=_reply_started,
                              env=env, cwd=ROOT, stdin_text="\n".join(lines) + "\n", timeout_s=180)
        started = _check_trial(trial, lines, result, db)
        if not anywhere:
            assert started >= after_acks, f"trial {trial}: killed after {started} replies, wanted {after_acks}"
        acknowledged_total += started
        mid_conversation += result.was_killed and started > 0
        trial += 1
    print(f"{trial} kills in {time.monotonic() - began:.0f} s, {mid_conversation} mid-conversation, "
          f"{acknowledged_total} answered turns checked")
    # The kills did land while the conversation was going, not only before it began, and checked enough turns.
    assert mid_conversation >= wanted_mid, f"only {mid_conversation} of {trial} kills came mid-conversation"
    assert acknowledged_total >= ACKNOWLEDGED_MIN, (
        f"only {acknowledged_total} answered turns checked in {trial} kills within {BUDGET_S:.0f} s")
    with MemoryStore(db) as store:
        assert store.turn_count("yuuri") >= acknowledged_total
