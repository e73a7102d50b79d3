"""The remembered persona and mode: a JSON file written atomically."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from assistant.state import STATE_FILE, AppState


def test_state_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "data" / STATE_FILE
    state = AppState(path).load()
    assert (state.persona, state.mode, state.mode_set_at) == (None, None, None)
    state.set_persona("miyu")
    before = time.time()
    state.set_mode("bedtime")
    again = AppState.in_data_dir(tmp_path / "data")
    assert (again.persona, again.mode) == ("miyu", "bedtime")
    assert again.mode_set_at is not None and before <= again.mode_set_at <= time.time()
    assert json.loads(path.read_text(encoding="utf-8"))["persona"] == "miyu"
    assert sorted(p.name for p in path.parent.iterdir()) == [STATE_FILE]  # no temporary files left


def test_unknown_keys_from_a_newer_version_are_kept(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    path.write_text(json.dumps({"persona": "yuuri", "volume": 0.4}), encoding="utf-8")
    state = AppState(path).load()
    state.set_mode("normal", at=100.0)
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "persona": "yuuri", "volume": 0.4, "mode": "normal", "mode_set_at": 100.0}


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "\x00\x01"])
def test_a_damaged_file_is_set_aside(tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / STATE_FILE
    path.write_text(content, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="assistant.state"):
        state = AppState(path).load()
    assert state.persona is None and "damaged" in caplog.text
    assert (tmp_path / f"{STATE_FILE}.bad").read_text(encoding="utf-8") == content
    state.set_persona("miyu")
    assert AppState(path).load().persona == "miyu"


def test_a_failed_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / STATE_FILE
    AppState(path).set_persona("yuuri")

    def refuse(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("assistant.state.os.replace", refuse)
    with pytest.raises(OSError):
        AppState(path).load().set_persona("miyu")
    monkeypatch.undo()
    assert AppState(path).load().persona == "yuuri"
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]
