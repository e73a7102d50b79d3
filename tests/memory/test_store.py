"""The SQLite memory store: WAL, schema migrations, turns, facts, summaries, search, export and forget."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from assistant.errors import SaijinError
from assistant.memory.store import SCHEMA_VERSION, MemoryStore, migrate, schema_version
from tests.fixtures.memory import add_chatter


def test_database_is_in_wal_mode_with_a_schema_version(memory_store: MemoryStore, memory_db: Path) -> None:
    memory_store.add_turn("miyu", "user", "こんにちは")
    raw = sqlite3.connect(memory_db)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert schema_version(raw) == SCHEMA_VERSION == memory_store.schema_version
        versions = [row[0] for row in raw.execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions == list(range(1, SCHEMA_VERSION + 1))
    finally:
        raw.close()
    assert Path(f"{memory_db}-wal").exists()
    assert memory_store.stats()["search"] == "fts5-trigram"


def test_synchronous_setting(memory_db: Path) -> None:
    with MemoryStore(memory_db) as normal:
        assert normal._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with MemoryStore(memory_db, synchronous="full") as full:
        assert full._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_an_older_schema_is_migrated_and_its_turns_become_searchable(memory_db: Path) -> None:
    memory_db.parent.mkdir(parents=True)
    old = sqlite3.connect(memory_db, isolation_level=None)
    assert migrate(old, target=1) == 1
    old.execute("INSERT INTO turns (persona, role, text, created_at) VALUES ('miyu', 'user', '私の名前はさくらです', ?)",
                (time.time(),))
    old.execute("INSERT INTO summaries (persona, up_to_turn, text, created_at) VALUES ('miyu', 1, '自己紹介した', ?)",
                (time.time(),))
    assert not old.execute("SELECT 1 FROM sqlite_master WHERE name = 'facts'").fetchone()
    old.close()

    with MemoryStore(memory_db) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert [hit.turn.text for hit in store.search("さくら")] == ["私の名前はさくらです"]
        assert store.latest_summary("miyu").text == "自己紹介した"
        fact = store.add_fact("miyu", "name", "さくら", source_turn=1)
        assert [f.id for f in store.facts("miyu")] == [fact]
        assert store.integrity_check() == "ok"


def test_a_newer_schema_is_refused_with_one_line(memory_db: Path) -> None:
    MemoryStore(memory_db).close()
    raw = sqlite3.connect(memory_db)
    raw.execute("INSERT INTO schema_version VALUES (?, 'from the future', 0)", (SCHEMA_VERSION + 1,))
    raw.commit()
    raw.close()
    with pytest.raises(SaijinError, match="newer than this Saijin") as caught:
        MemoryStore(memory_db)
    assert "\n" not in str(caught.value)


def test_a_file_that_is_not_a_database_gives_a_clear_error(memory_db: Path) -> None:
    memory_db.parent.mkdir(parents=True)
    memory_db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SaijinError, match="cannot open the memory database"):
        MemoryStore(memory_db)


def test_turns_are_stored_with_everything_about_them(memory_store: MemoryStore) -> None:
    user = memory_store.add_turn("miyu", "user", "疲れた", emotion="sad", emotion_score=0.82, turn_id=7)
    reply = memory_store.add_turn("miyu", "assistant", "お疲れさま、今日は", is_interrupted=True, turn_id=7)
    memory_store.finish_turn(reply, text="お疲れさま、今日は…", is_interrupted=True, ended_at=123.0)
    memory_store.add_turn("yuuri", "user", "別の人")
    assert reply > user
    first, second = memory_store.recent("miyu", 5)
    assert (first.role, first.text, first.emotion, first.emotion_score, first.turn_id) == ("user", "疲れた", "sad", 0.82, 7)
    assert (second.text, second.is_interrupted, second.ended_at) == ("お疲れさま、今日は…", True, 123.0)
    assert [t.text for t in memory_store.recent("miyu", 1)] == ["お疲れさま、今日は…"]
    assert memory_store.turn_count() == 3
    with pytest.raises(ValueError, match="role"):
        memory_store.add_turn("miyu", "system", "no")  # type: ignore[arg-type]


def test_search_finds_japanese_substrings_and_filters_by_persona(memory_store: MemoryStore) -> None:
    memory_store.add_turn("miyu", "user", "私の名前はさくらです")
    memory_store.add_turn("yuuri", "user", "さくらの花が咲いた")
    add_chatter(memory_store, "miyu", 30)
    assert {hit.turn.persona for hit in memory_store.search("さくら")} == {"miyu", "yuuri"}
    assert [hit.turn.text for hit in memory_store.search("さくら", persona="miyu")] == ["私の名前はさくらです"]
    # Every part must be present.
    assert [hit.turn.text for hit in memory_store.search("さくら 花")] == ["さくらの花が咲いた"]
    assert memory_store.search("存在しない言葉") == []


def test_short_queries_fall_back_to_like(memory_store: MemoryStore) -> None:
    memory_store.add_turn("miyu", "user", "猫を飼っている")
    memory_store.add_turn("miyu", "user", "犬が好き")
    assert [hit.turn.text for hit in memory_store.search("猫")] == ["猫を飼っている"]
    assert [hit.turn.text for hit in memory_store.search("好き")] == ["犬が好き"]
    # LIKE wildcards in the query are literal characters.
    memory_store.add_turn("miyu", "user", "100%_sure")
    assert [hit.turn.text for hit in memory_store.search("%_")] == ["100%_sure"]


def test_fts_syntax_in_queries_is_literal(memory_store: MemoryStore) -> None:
    memory_store.add_turn("miyu", "user", 'He said "NEAR(a b)" OR maybe* not')
    for query in ['"NEAR(a', "maybe*", "OR maybe", 'said "NEAR']:
        assert [hit.turn.id for hit in memory_store.search(query)] == [1], query
    assert memory_store.search("AND") == []


def test_search_ranks_by_relevance_and_recency(memory_store: MemoryStore) -> None:
    now, year = time.time(), 365 * 86400
    year_ago = memory_store.add_turn("miyu", "user", "沖縄に旅行した", created_at=now - year)
    today = memory_store.add_turn("miyu", "user", "沖縄に旅行した", created_at=now)
    both_terms = memory_store.add_turn("miyu", "user", "沖縄でソーキそばを食べた", created_at=now - year)
    add_chatter(memory_store, "miyu", 20)
    # The same text: the newer one first.
    assert [hit.turn.id for hit in memory_store.search("沖縄に旅行")] == [today, year_ago]
    # More of the query beats recency.
    ranked = memory_store.search_terms(["ソーキ", "沖縄で", "旅行し"], persona="miyu")
    assert [hit.turn.id for hit in ranked] == [both_terms, today, year_ago]
    assert [hit.matched for hit in ranked] == [2, 1, 1]


def test_facts_are_deduplicated_and_single_valued_kinds_replace(memory_store: MemoryStore) -> None:
    first = memory_store.add_fact("miyu", "like", "猫")
    again = memory_store.add_fact("miyu", "like", " 猫。")
    memory_store.add_fact("miyu", "like", "ラーメン")
    assert first == again
    assert sorted(f.text for f in memory_store.facts("miyu")) == ["ラーメン", "猫"]
    memory_store.add_fact("miyu", "name", "さくら", replace_kind=True)
    memory_store.add_fact("miyu", "name", "ゆき", replace_kind=True)
    assert [f.text for f in memory_store.facts("miyu") if f.kind == "name"] == ["ゆき"]
    assert memory_store.facts("yuuri") == []
    assert [f.text for f in memory_store.search_facts(["ラーメン"], persona="miyu")] == ["ラーメン"]


def test_summaries_track_the_turns_they_cover(memory_store: MemoryStore) -> None:
    ids = add_chatter(memory_store, "miyu", 6)
    assert memory_store.latest_summary("miyu") is None
    assert [t.id for t in memory_store.turns_since_summary("miyu")] == ids
    memory_store.save_summary("miyu", ids[3], "雨とおにぎりの話")
    assert memory_store.latest_summary("miyu").text == "雨とおにぎりの話"
    assert [t.id for t in memory_store.turns_since_summary("miyu")] == ids[4:]
    assert memory_store.count_since_summary("miyu") == 2
    assert [t.id for t in memory_store.turns_since_summary("miyu", limit=1)] == ids[4:5]


def test_export_writes_json_lines_of_everything(memory_store: MemoryStore, tmp_path: Path) -> None:
    turn = memory_store.add_turn("miyu", "user", "私の名前はさくらです", emotion="happy", emotion_score=0.9)
    memory_store.add_fact("miyu", "name", "さくら", source_turn=turn)
    memory_store.save_summary("miyu", turn, "さくらさんが自己紹介した")
    memory_store.add_turn("yuuri", "user", "こんばんは")
    target = tmp_path / "export.jsonl"
    assert memory_store.export_jsonl(target) == 4
    records = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [r["record"] for r in records] == ["turn", "turn", "fact", "summary"]
    assert records[0]["text"] == "私の名前はさくらです" and records[0]["emotion"] == "happy"
    assert datetime.fromisoformat(records[0]["created_at"]).tzinfo is not None
    assert memory_store.export_jsonl(tmp_path / "miyu.jsonl", persona="miyu") == 3


def test_forget_by_persona_and_date_range(memory_store: MemoryStore) -> None:
    day = 86400.0
    base = datetime(2026, 11, 1).timestamp()
    for offset in range(5):
        turn = memory_store.add_turn("miyu", "user", f"{offset}日目の話", created_at=base + offset * day)
        memory_store.add_fact("miyu", "like", f"好きなもの{offset}", source_turn=turn, created_at=base + offset * day)
        memory_store.add_turn("yuuri", "user", f"ゆうり{offset}日目", created_at=base + offset * day)
    memory_store.save_summary("miyu", 1, "初日の要約", created_at=base)
    memory_store.save_summary("miyu", 9, "五日目までの要約", created_at=base + 4 * day)

    preview = memory_store.forget("miyu", since=base + 1 * day, until=base + 3 * day, dry_run=True)
    assert (preview.turns, preview.facts, preview.summaries) == (2, 2, 1)
    assert memory_store.turn_count() == 10
    result = memory_store.forget("miyu", since=datetime(2026, 11, 2), until=datetime(2026, 11, 4))
    assert result == preview
    assert [t.text for t in memory_store.turns("miyu")] == ["0日目の話", "3日目の話", "4日目の話"]
    assert memory_store.turn_count("yuuri") == 5
    # The early summary covers none of the forgotten turns; the later one might have mentioned them.
    assert [s.text for s in memory_store.summaries("miyu")] == ["初日の要約"]
    assert sorted(f.text for f in memory_store.facts("miyu")) == ["好きなもの0", "好きなもの3", "好きなもの4"]
    assert memory_store.search("1日目", persona="miyu") == []

    assert memory_store.forget(persona="yuuri").turns == 5
    assert memory_store.turn_count("yuuri") == 0
    everything = memory_store.forget()
    assert (everything.turns, everything.facts, everything.summaries) == (3, 3, 1)
    assert memory_store.stats()["turns"] == 0
    assert memory_store.integrity_check() == "ok"


def test_forgotten_text_is_gone_from_the_file(memory_db: Path) -> None:
    with MemoryStore(memory_db) as store:
        add_chatter(store, "yuuri", 40)
        store.add_turn("miyu", "user", "ひみつの合言葉はカシオペア")
        add_chatter(store, "miyu", 10)
        add_chatter(store, "yuuri", 40)
        store.forget(persona="miyu")
        assert store.turn_count() == 80
    # Neither the text nor the search index's trigrams of it remain anywhere in the files.
    for secret in ("カシオペア", "カシオ", "シオペ", "オペア"):
        for path in memory_db.parent.iterdir():
            assert secret.encode() not in path.read_bytes(), (secret, path.name)


def test_concurrent_writers_from_threads_lose_nothing(memory_store: MemoryStore) -> None:
    ids: list[int] = []
    lock = threading.Lock()

    def write(persona: str) -> None:
        for index in range(100):
            row = memory_store.add_turn(persona, "user", f"{persona} {index}")
            with lock:
                ids.append(row)

    threads = [threading.Thread(target=write, args=(name,)) for name in ("miyu", "yuuri", "aoi", "ren")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 400
    assert memory_store.turn_ids() == set(ids)
    assert memory_store.integrity_check() == "ok"


def test_two_processes_share_the_file(memory_db: Path) -> None:
    with MemoryStore(memory_db) as chat, MemoryStore(memory_db) as command_line:
        chat.add_turn("miyu", "user", "私の名前はさくらです")
        assert [hit.turn.text for hit in command_line.search("さくら")] == ["私の名前はさくらです"]
        command_line.forget(persona="miyu")
        assert chat.turn_count() == 0
