"""Kill -9 durability harness: run a real process, SIGKILL it at a random moment, check what it acknowledged.

Reusable for any process that prints a line once a turn is committed (the memory writer below, or
``saijin chat``): ``run_and_kill`` collects the acknowledged ids from its stdout up to the kill, and
``check_database`` reopens the database as a restarted assistant would and reports missing ids and the
integrity check. ``durability_trials()`` is the trial count (50, or ``$SAIJIN_DURABILITY_TRIALS``).

Run as ``python -m tests.memory.durability write DB`` (from the project folder) for a process that adds turns
in a loop, printing ``turn ID`` after each commit, while a second thread writes summaries and facts.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TRIALS = 50


def durability_trials(default: int = DEFAULT_TRIALS) -> int:
    """How many kill -9 trials to run: ``$SAIJIN_DURABILITY_TRIALS`` or ``default``."""
    value = os.environ.get("SAIJIN_DURABILITY_TRIALS")
    return max(1, int(value)) if value else default


def parse_turn_ack(line: str) -> int | None:
    """``turn 42`` -> 42; any other line -> None."""
    parts = line.split()
    if len(parts) == 2 and parts[0] == "turn" and parts[1].isdigit():
        return int(parts[1])
    return None


@dataclass
class KillResult:
    """What a killed process acknowledged before it died."""

    acknowledged: list[int]
    returncode: int | None
    killed_after_s: float
    was_killed: bool
    stdout: list[str] = field(default_factory=list)
    stderr: str = ""


def run_and_kill(argv: Sequence[str], *, kill_after_s: float, parse_ack: Callable[[str], int | None] = parse_turn_ack,
                 after_first_ack: bool = False, after_acks: int = 0, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None, stdin_text: str | None = None, kill_group: bool = False,
                 timeout_s: float = 120.0) -> KillResult:
    """Start ``argv``, SIGKILL it ``kill_after_s`` seconds after it starts, or after its ``after_acks``-th
    acknowledgement (``after_first_ack`` is ``after_acks=1``), however long the process takes to get there
    (up to ``timeout_s``): on a slow machine the kill still lands after that many acknowledgements.

    Every stdout line that ``parse_ack`` turns into an id counts as acknowledged; lines written before the
    kill are still read from the pipe afterwards. ``kill_group`` kills the process's whole group (it runs
    in a new session then). If the process exits on its own first, nothing is killed.
    """
    wanted_acks = max(after_acks, 1 if after_first_ack else 0)
    process = subprocess.Popen(
        list(argv), stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
        env=env, cwd=cwd, start_new_session=kill_group)
    started = time.monotonic()
    acknowledged: list[int] = []
    lines: list[str] = []
    enough_acks = threading.Event()
    stderr_parts: list[str] = []

    def read_stdout() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            ack = parse_ack(line.strip())
            if ack is not None:
                acknowledged.append(ack)
                if len(acknowledged) >= wanted_acks:
                    enough_acks.set()
        enough_acks.set()  # EOF: stop waiting for more

    def read_stderr() -> None:
        assert process.stderr is not None
        stderr_parts.append(process.stderr.read())

    readers = [threading.Thread(target=read_stdout, daemon=True), threading.Thread(target=read_stderr, daemon=True)]
    for reader in readers:
        reader.start()
    if stdin_text is not None:
        assert process.stdin is not None
        try:
            process.stdin.write(stdin_text)
            process.stdin.flush()
        except BrokenPipeError:
            pass
    if wanted_acks:
        enough_acks.wait(timeout_s)
    deadline = (time.monotonic() if wanted_acks else started) + kill_after_s
    was_killed = False
    try:
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        if kill_group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.send_signal(signal.SIGKILL)
        was_killed = True
    killed_after = time.monotonic() - started
    try:
        returncode = process.wait(timeout=timeout_s)
    finally:
        for reader in readers:
            reader.join(timeout_s)
    return KillResult(acknowledged=acknowledged, returncode=returncode, killed_after_s=killed_after,
                      was_killed=was_killed, stdout=lines, stderr="".join(stderr_parts))


@dataclass
class DatabaseCheck:
    """The state of a memory database after a restart."""

    missing: list[int]
    integrity: str
    turn_count: int

    @property
    def is_ok(self) -> bool:
        return not self.missing and self.integrity == "ok"


def check_database(path: str | Path, acknowledged: Sequence[int]) -> DatabaseCheck:
    """Reopen ``path`` the way a restarted assistant does; which acknowledged ids are missing, and integrity."""
    from assistant.memory.store import MemoryStore

    with MemoryStore(path) as store:
        present = store.turn_ids()
        integrity = store.integrity_check()
    return DatabaseCheck(missing=sorted(set(acknowledged) - present), integrity=integrity, turn_count=len(present))


def writer_command(db: str | Path, *, persona: str = "miyu", python: str = sys.executable) -> list[str]:
    """The argv of the memory writer process (run it with ``cwd=ROOT``)."""
    return [python, "-m", "tests.memory.durability", "write", str(db), "--persona", persona]


def random_kill_delay(rng: random.Random, low: float = 0.0, high: float = 0.4) -> float:
    return rng.uniform(low, high)


# --------------------------------------------------------------------------------------------------
# the writer process
# --------------------------------------------------------------------------------------------------


def _write_forever(db: str, persona: str, interval_s: float) -> None:
    from assistant.memory.facts import remember_facts
    from assistant.memory.store import MemoryStore

    store = MemoryStore(db)
    stop = threading.Event()

    def summarise_meanwhile() -> None:
        # A second writer, as the background summary would be: reads the backlog, saves a summary of it.
        while not stop.is_set():
            backlog = store.turns_since_summary(persona, limit=40)
            if len(backlog) >= 10:
                text = " / ".join(turn.text[:12] for turn in backlog[-5:])
                store.save_summary(persona, backlog[-1].id, text)
            time.sleep(0.005)

    threading.Thread(target=summarise_meanwhile, daemon=True).start()
    index = 0
    while True:
        text = f"ターン{index}：今日は{index % 7}時に起きて、猫と散歩した。" + "あ" * (index % 50)
        row = store.add_turn(persona, "user", text, emotion="happy" if index % 3 else None,
                             emotion_score=0.7 if index % 3 else None, turn_id=index)
        sys.stdout.write(f"turn {row}\n")
        sys.stdout.flush()
        if index % 5 == 0:
            remember_facts(store, persona, f"私の名前はさくら{index}です", source_turn=row)
        reply = store.add_turn(persona, "assistant", f"そうなんだ、{index}回目の散歩だね。" * (1 + index % 4),
                               is_interrupted=index % 4 == 0, turn_id=index)
        sys.stdout.write(f"turn {reply}\n")
        sys.stdout.flush()
        index += 1
        if interval_s:
            time.sleep(interval_s)


def _acknowledge_before_commit(db: str, persona: str) -> None:
    """A deliberately wrong writer (prints the id, then commits), to show the check catches lost turns."""
    import sqlite3

    from assistant.memory.store import MemoryStore

    MemoryStore(db).close()  # the schema
    conn = sqlite3.connect(db, isolation_level=None)
    while True:
        conn.execute("BEGIN IMMEDIATE")
        cursor = conn.execute("INSERT INTO turns (persona, role, text, created_at) VALUES (?, 'user', ?, ?)",
                              (persona, "まだコミットしていない", time.time()))
        sys.stdout.write(f"turn {cursor.lastrowid}\n")
        sys.stdout.flush()
        time.sleep(0.02)
        conn.execute("COMMIT")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.memory.durability")
    sub = parser.add_subparsers(dest="action", required=True)
    write = sub.add_parser("write", help="add turns forever, printing `turn ID` after each commit")
    write.add_argument("db")
    write.add_argument("--persona", default="miyu")
    write.add_argument("--interval", type=float, default=0.0, help="seconds between turns")
    write.add_argument("--ack-before-commit", action="store_true", help="the wrong order, for testing the check")
    args = parser.parse_args(argv)
    if args.ack_before_commit:
        _acknowledge_before_commit(args.db, args.persona)
    _write_forever(args.db, args.persona, args.interval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
