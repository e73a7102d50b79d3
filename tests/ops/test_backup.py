"""Backup and restore: a consistent snapshot while the assistant writes, validation before anything is replaced."""

from __future__ import annotations

import io
import sqlite3
import tarfile
import threading
import time
from pathlib import Path

import pytest

from assistant.cli.main import main
from assistant.config.loader import load_settings
from assistant.errors import BadInputError
from assistant.ops.backup import create_backup, database_path, restore_backup


def _open_memory_db(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS turns (id INTEGER PRIMARY KEY, persona TEXT, text TEXT, at REAL)")
    db.commit()
    return db


class Writer(threading.Thread):
    """Commits a turn every millisecond, like a talkative assistant."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.db = _open_memory_db(path)
        self.stop_event = threading.Event()
        self.written = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.db.execute("INSERT INTO turns (persona, text, at) VALUES (?, ?, ?)",
                            ("yuuri", "こんばんは、きょうもお疲れ様。" * 8, time.time()))
            self.db.commit()
            self.written += 1
            time.sleep(0.001)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


def _count(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM turns").fetchone()[0]
    finally:
        db.close()


@pytest.fixture
def settings(config_dir: Path):
    return load_settings(config_dir, "cpu")


def test_backup_and_restore_round_trip_while_the_assistant_writes(settings, tmp_path: Path):
    database = database_path(settings)
    seed = _open_memory_db(database)
    seed.executemany("INSERT INTO turns (persona, text, at) VALUES (?, ?, ?)",
                     [("miyu", "おはよう！" * 40, 0.0)] * 20000)
    seed.commit()
    writer = Writer(database)
    writer.start()
    try:
        while writer.written < 50:
            time.sleep(0.01)
        archive = create_backup(settings)
        written_at_backup = writer.written
        while writer.written < written_at_backup + 200:
            time.sleep(0.01)
    finally:
        writer.stop()
    assert archive.name.startswith("saijin-backup-") and archive.name.endswith(".tar.gz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert {"manifest.json", "memory.db", "config/routing.yaml", "config/personas/yuuri.yaml"} <= set(names)
        tar.extract("memory.db", tmp_path, filter="data")
    snapshot_rows = _count(tmp_path / "memory.db")
    assert 20000 + 50 <= snapshot_rows <= 20000 + written_at_backup + 1
    live_rows = _count(database)
    assert live_rows > snapshot_rows

    (settings.config_dir / "rules.yaml").write_text((settings.config_dir / "rules.yaml").read_text() + "\n# changed\n")
    reader = sqlite3.connect(database)  # a running assistant's connection stays usable across the restore
    result = restore_backup(settings, archive)
    assert result.restored_database and result.config_files >= 5
    assert _count(database) == snapshot_rows
    assert reader.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == snapshot_rows
    assert reader.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    reader.close()
    assert "# changed" not in (settings.config_dir / "rules.yaml").read_text()
    # What was replaced is kept.
    assert _count(result.kept / "memory.db") == live_rows
    assert "# changed" in (result.kept / "config" / "rules.yaml").read_text()
    load_settings(settings.config_dir, "cpu")


def test_a_damaged_archive_is_refused_before_anything_changes(settings, tmp_path: Path):
    _open_memory_db(database_path(settings)).close()
    archive = create_backup(settings, tmp_path)
    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(archive) as src, tarfile.open(damaged, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member)
            if member.name == "config/rules.yaml":
                content = data.read() + b"\n# tampered\n"
                member.size = len(content)
                data = io.BytesIO(content)
            dst.addfile(member, data)
    before = (settings.config_dir / "rules.yaml").read_text()
    with pytest.raises(BadInputError, match=r"config/rules\.yaml is damaged"):
        restore_backup(settings, damaged)
    assert (settings.config_dir / "rules.yaml").read_text() == before
    assert not list((settings.data_dir / "backups").glob("replaced-*"))


def test_an_archive_whose_config_does_not_load_is_refused(settings, tmp_path: Path):
    (settings.config_dir / "assistant.yaml").write_text((settings.config_dir / "assistant.yaml").read_text()
                                                        + "\nno_such_setting: 1\n")
    archive = create_backup(settings, tmp_path)
    with pytest.raises(BadInputError, match="its config does not load"):
        restore_backup(settings, archive)


def test_backup_and_restore_commands(config_dir: Path, capsys):
    settings = load_settings(config_dir, "cpu")
    db = _open_memory_db(database_path(settings))
    db.execute("INSERT INTO turns (persona, text, at) VALUES ('yuuri', 'おやすみ', 0)")
    db.commit()
    db.close()
    assert main(["backup", "--config", str(config_dir), "--profile", "cpu"]) == 0
    archive = Path(capsys.readouterr().out.split()[0])
    assert archive.is_file()
    # A config broken by hand is what restores are for: the command still works.
    (config_dir / "assistant.yaml").write_text("persona: [oops\n")
    assert main(["restore", str(archive), "--config", str(config_dir), "--profile", "cpu"]) == 0
    assert "restored the memory database" in capsys.readouterr().out
    load_settings(config_dir, "cpu")
    assert main(["restore", str(config_dir / "missing.tar.gz"), "--config", str(config_dir)]) == 2
