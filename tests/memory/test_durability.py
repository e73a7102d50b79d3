"""Kill -9 durability with real processes: every turn a writer acknowledged survives, and the file stays sound."""

from __future__ import annotations

import random
from pathlib import Path

from tests.memory.durability import ROOT, check_database, durability_trials, run_and_kill, writer_command


def test_acknowledged_turns_survive_kill_9_at_random_moments(memory_db: Path) -> None:
    rng = random.Random(20261122)
    trials = durability_trials()
    acknowledged_total = 0
    kills_mid_run = 0
    for trial in range(trials):
        # Half the kills land anywhere (start-up, opening, migration); half in the middle of the write loop.
        after_first = trial % 2 == 1
        delay = rng.uniform(0.0, 0.15) if after_first else rng.uniform(0.0, 0.4)
        result = run_and_kill(writer_command(memory_db), kill_after_s=delay, after_first_ack=after_first,
                              cwd=ROOT)
        assert result.was_killed, f"trial {trial}: the writer exited by itself: {result.stderr[-500:]}"
        assert "Traceback" not in result.stderr, result.stderr
        check = check_database(memory_db, result.acknowledged)
        assert check.missing == [], f"trial {trial}: acknowledged turns lost after kill -9: {check.missing[:10]}"
        assert check.integrity == "ok", f"trial {trial}: {check.integrity}"
        acknowledged_total += len(result.acknowledged)
        kills_mid_run += bool(result.acknowledged)
    # The kills really did land while turns were being written, not only before the first one.
    assert kills_mid_run >= trials // 2
    assert acknowledged_total > trials


def test_the_check_catches_a_writer_that_acknowledges_before_committing(memory_db: Path) -> None:
    rng = random.Random(7)
    for _trial in range(20):
        result = run_and_kill([*writer_command(memory_db), "--ack-before-commit"],
                              kill_after_s=rng.uniform(0.05, 0.3), after_first_ack=True, cwd=ROOT)
        check = check_database(memory_db, result.acknowledged)
        assert check.integrity == "ok"
        if check.missing:
            return
    raise AssertionError("20 kills of a writer that acknowledges before committing never lost a turn")
