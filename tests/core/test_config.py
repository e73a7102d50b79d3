"""Configuration: the shipped files load, and each kind of error gives one line naming file and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from assistant.config import load_settings
from assistant.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_shipped_config_loads_with_each_profile(profile: str) -> None:
    settings = load_settings(ROOT / "config", profile)
    assert {"yuuri", "miyu"} <= set(settings.personas)
    assert settings.personas["miyu"].display_name == "美遊"
    assert settings.personas["yuuri"].display_name == "悠璃"
    assert settings.routing.default in settings.routing.engines
    if profile == "cpu":
        assert settings.routing.engines[settings.routing.default].kind == "embedded"
        assert settings.assistant.asr.model.startswith("offline:")


def test_personas_have_distinct_voices_and_colours() -> None:
    settings = load_settings(ROOT / "config", "cpu")
    yuuri, miyu = settings.personas["yuuri"], settings.personas["miyu"]
    assert (yuuri.voice.voice, yuuri.voice.length_scale) != (miyu.voice.voice, miyu.voice.length_scale)
    assert yuuri.avatar.color != miyu.avatar.color


def _error(config_dir: Path, profile: str = "cpu") -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(config_dir, profile)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_wrong_type_names_file_and_field(config_dir: Path) -> None:
    _edit(config_dir / "personas" / "miyu.yaml", lambda d: d["voice"].__setitem__("length_scale", -1))
    message = _error(config_dir)
    assert message.startswith(str(config_dir / "personas" / "miyu.yaml"))
    assert "voice.length_scale" in message and "greater than 0" in message and "-1" in message


def test_unknown_key_is_an_error(config_dir: Path) -> None:
    _edit(config_dir / "assistant.yaml", lambda d: d["vad"].__setitem__("hangover", 300))
    message = _error(config_dir)
    assert "assistant.yaml" in message and "vad.hangover" in message and "unknown key" in message


def test_missing_required_field(config_dir: Path) -> None:
    _edit(config_dir / "personas" / "yuuri.yaml", lambda d: d.pop("system_prompt"))
    message = _error(config_dir)
    assert "yuuri.yaml" in message and "system_prompt: required but missing" in message


def test_yaml_syntax_error_has_line_and_column(config_dir: Path) -> None:
    path = config_dir / "rules.yaml"
    path.write_text("rules:\n  - ok\n  bad: [unclosed\n", encoding="utf-8")
    message = _error(config_dir)
    assert "rules.yaml" in message and "line " in message and "column " in message


def test_missing_file(config_dir: Path) -> None:
    (config_dir / "routing.yaml").unlink()
    assert "routing.yaml: file not found" in _error(config_dir)


def test_routing_names_an_engine_that_does_not_exist(config_dir: Path) -> None:
    _edit(config_dir / "routing.yaml", lambda d: d["personas"].__setitem__("miyu", "AI_9"))
    message = _error(config_dir, "gpu")
    assert "routing.yaml" in message and "AI_9" in message


def test_persona_id_must_match_file_name(config_dir: Path) -> None:
    _edit(config_dir / "personas" / "miyu.yaml", lambda d: d.__setitem__("id", "mio"))
    assert "id: must match the file name" in _error(config_dir)


def test_bad_enum_value(config_dir: Path) -> None:
    _edit(config_dir / "assistant.yaml", lambda d: d["barge_in"].__setitem__("echo_gate", "loud"))
    message = _error(config_dir)
    assert "barge_in.echo_gate" in message and "'loud'" in message


def test_unknown_profile(config_dir: Path) -> None:
    assert "profile 'tpu' not found" in _error(config_dir, "tpu")


def test_bad_schedule_time(config_dir: Path) -> None:
    _edit(config_dir / "assistant.yaml", lambda d: d["bedtime"].__setitem__("schedule", {"start": "25:00", "end": "06:00"}))
    assert "bedtime.schedule.start" in _error(config_dir)


def test_profile_overlay_applies(config_dir: Path) -> None:
    settings = load_settings(config_dir, "gpu")
    assert settings.assistant.asr.device == "cuda"
    assert load_settings(config_dir, "cpu").assistant.asr.device == "cpu"


def test_cli_bad_persona_file_exits_2_with_one_line(config_dir: Path) -> None:
    _edit(config_dir / "personas" / "miyu.yaml", lambda d: d["voice"].__setitem__("volume", "loud"))
    proc = subprocess.run([sys.executable, "-m", "assistant", "chat", "--config", str(config_dir), "--profile", "cpu",
                           "--say", "hi", "--no-voice"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "miyu.yaml" in lines[0] and "voice.volume" in lines[0]
    assert "Traceback" not in proc.stderr
