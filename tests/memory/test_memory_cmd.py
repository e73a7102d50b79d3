"""`saijin memory show|search|export|forget` through the real entry point."""

from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path

import pytest

from assistant.cli import main as cli
from assistant.config.loader import load_settings
from assistant.config.schema import MemoryConfig
from assistant.memory.conversation import PersonaMemory
from assistant.memory.store import MemoryStore, database_path
from tests.fixtures.memory import add_chatter


@pytest.fixture
def saijin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], config_dir: Path):
    """Run `saijin ARGS` in process (only the memory command is loaded); returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(cli, "COMMANDS", ("memory",))

    def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = cli.main(["memory", "--config", str(config_dir), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def db(config_dir: Path) -> Path:
    return database_path(load_settings(config_dir))


def test_the_database_path_comes_from_the_settings(config_dir: Path, db: Path) -> None:
    assert db == (config_dir.parent / "data" / "memory.db").resolve()


def test_export_then_forget_then_show(saijin, db: Path, tmp_path: Path) -> None:
    with MemoryStore(db) as store:
        memory = PersonaMemory(store, MemoryConfig())
        memory.record("miyu", "user", "私の名前はさくらです", turn_id=1, emotion="happy", emotion_score=0.9)
        memory.record("miyu", "assistant", "よろしくね、さくらちゃん", turn_id=1)
        add_chatter(store, "yuuri", 4)

    code, out, _ = saijin("search", "さくら")
    assert code == 0 and "私の名前はさくらです" in out and "the user's name: さくら" in out

    code, out, _ = saijin("show", "--persona", "miyu")
    assert code == 0 and "6 turns" in out and "私の名前はさくらです  (happy 0.90)" in out

    export = tmp_path / "memory.jsonl"
    code, _, err = saijin("export", str(export))
    assert code == 0 and "exported 7 records" in err
    records = [json.loads(line) for line in export.read_text(encoding="utf-8").splitlines()]
    assert [r["record"] for r in records].count("turn") == 6
    assert {"record": "fact", "kind": "name", "text": "さくら"}.items() <= next(
        r for r in records if r["record"] == "fact").items()

    code, out, _ = saijin("forget", "--yes")
    assert code == 0 and "forgot 6 turns, 1 fact and 0 summaries (everything)" in out

    code, out, _ = saijin("show")
    assert code == 0 and "0 turns, 0 facts, 0 summaries" in out and "さくら" not in out
    code, out, err = saijin("search", "さくら")
    assert code == 0 and out == "" and "nothing found" in err
    assert len(export.read_text(encoding="utf-8").splitlines()) == 7  # the export outlives the forgetting


def test_export_to_standard_output(saijin, db: Path) -> None:
    with MemoryStore(db) as store:
        add_chatter(store, "miyu", 3)
    code, out, _ = saijin("export", "--persona", "miyu")
    assert code == 0 and [json.loads(line)["record"] for line in out.splitlines()] == ["turn"] * 3


def test_forget_asks_first(saijin, db: Path) -> None:
    with MemoryStore(db) as store:
        add_chatter(store, "miyu", 4)
    code, out, err = saijin("forget", "--persona", "miyu", stdin="n\n")
    assert code == 1 and "nothing was forgotten" in err
    assert "Forget 4 turns, 0 facts and 0 summaries (persona miyu)?" in out
    code, _, _ = saijin("forget", "--persona", "miyu", stdin="")  # no answer at all
    assert code == 1
    with MemoryStore(db) as store:
        assert store.turn_count() == 4
    code, out, _ = saijin("forget", "--persona", "miyu", stdin="y\n")
    assert code == 0 and "forgot 4 turns" in out
    with MemoryStore(db) as store:
        assert store.turn_count() == 0


def test_forget_by_persona_and_date_range(saijin, db: Path) -> None:
    with MemoryStore(db) as store:
        for day in range(1, 6):
            at = datetime(2026, 11, day, 12).timestamp()
            store.add_turn("miyu", "user", f"11月{day}日のみゆ", created_at=at)
            store.add_turn("yuuri", "user", f"11月{day}日のゆうり", created_at=at)
    # --until is a whole day, inclusive.
    code, out, _ = saijin("forget", "--persona", "miyu", "--since", "2026-11-02", "--until", "2026-11-03", "--yes")
    assert code == 0 and "forgot 2 turns" in out and "persona miyu, since 2026-11-02, until 2026-11-03" in out
    code, out, _ = saijin("forget", "--until", "2026-11-01T23:00", "--yes")
    assert code == 0 and "forgot 2 turns" in out
    with MemoryStore(db) as store:
        assert [t.text for t in store.turns("miyu")] == ["11月4日のみゆ", "11月5日のみゆ"]
        assert [t.text for t in store.turns("yuuri")] == [f"11月{d}日のゆうり" for d in range(2, 6)]
    code, out, _ = saijin("forget", "--persona", "nobody", "--yes")
    assert code == 0 and "nothing to forget" in out


@pytest.mark.parametrize(("args", "message"), [
    (("forget", "--since", "last tuesday"), "--since: not a date or time (got 'last tuesday')"),
    (("forget", "--since", "2026-11-05", "--until", "2026-11-01"), "is not before --until"),
])
def test_bad_dates_are_usage_errors(saijin, db: Path, args: tuple[str, ...], message: str) -> None:
    with MemoryStore(db) as store:
        add_chatter(store, "miyu", 2)
    code, _, err = saijin(*args, "--yes")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_without_a_database_nothing_is_created(saijin, db: Path, config_dir: Path) -> None:
    code, _out, err = saijin("show")
    assert code == 0 and "no memory yet" in err
    assert not db.exists()
    # The global options also work after the action.
    code, _, err = saijin("search", "さくら", "--config", str(config_dir))
    assert code == 0 and "no memory yet" in err
