"""systemd --user units: generated from routing.yaml, checked by `systemd-analyze verify`, installed to a folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.cli.main import main
from assistant.config.loader import load_settings
from assistant.ops.systemd import MARKER, engine_unit_name, render_units, systemd_quote
from tests.fixtures.ops import make_hf_model


@pytest.fixture
def service_config(config_dir: Path, routing_writer) -> Path:
    model = make_hf_model(config_dir.parent / "models" / "swallow 8b")  # a space, to exercise quoting
    engine = {"kind": "vllm", "base_url": "http://127.0.0.1:8011/v1", "model": "swallow-8b", "model_path": str(model),
              "resident": True, "launch": {"python": sys.executable, "port": 8011, "max_model_len": 4096,
                                           "quantization": "awq", "env": {"HF_HOME": "/srv/hf cache"}}}
    on_demand = {**engine, "resident": False, "base_url": "http://127.0.0.1:8012/v1",
                 "launch": {**engine["launch"], "port": 8012}}
    routing_writer({"AI_1": engine, "AI_3": on_demand}, fallback=["AI_1", "AI_3"])
    return config_dir


def _verify(unit_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install systemd (bash .ci/setup --test)"
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(runtime), "HOME": str(tmp_path)}
    units = sorted(str(p) for p in unit_dir.glob("*.service"))
    return subprocess.run([analyze, "verify", "--user", *units], capture_output=True, text=True, env=env,
                          cwd=unit_dir, timeout=60)


def test_units_for_resident_engines_and_the_assistant(service_config: Path):
    plan = render_units(load_settings(service_config, "none"))
    assert plan.names == [engine_unit_name("AI_1"), "saijin.service"]  # on-demand AI_3 is the manager's job
    engine_unit = plan.units["saijin-llm-AI_1.service"]
    assert "Restart=always" in engine_unit and "WantedBy=default.target" in engine_unit
    exec_start = next(line for line in engine_unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start.startswith(f"ExecStart={sys.executable} -m vllm.entrypoints.openai.api_server")
    assert "--quantization awq" in exec_start and "--enable-prefix-caching" in exec_start
    assert '"' + str(service_config.parent / "models" / "swallow 8b") + '"' in exec_start
    assert 'Environment="HF_HOME=/srv/hf cache"' in engine_unit
    assert "ExecStartPost=" in engine_unit and "llm wait AI_1" in engine_unit
    assistant_unit = plan.units["saijin.service"]
    assert "After=saijin-llm-AI_1.service" in assistant_unit and "Wants=saijin-llm-AI_1.service" in assistant_unit
    assert "Environment=SAIJIN_EXTERNAL_ENGINES=AI_1" in assistant_unit
    assert f"WorkingDirectory={service_config.parent}" in assistant_unit
    assert "Restart=always" in assistant_unit


def test_generated_units_pass_systemd_analyze_verify(service_config: Path, tmp_path: Path, capsys):
    unit_dir = tmp_path / "units"
    assert main(["service", "install", "--unit-dir", str(unit_dir), "--config", str(service_config),
                 "--profile", "none"]) == 0
    out = capsys.readouterr().out
    assert "systemctl --user enable --now saijin-llm-AI_1.service saijin.service" in out
    result = _verify(unit_dir, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_verify_catches_a_broken_unit(service_config: Path, tmp_path: Path):
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    text = render_units(load_settings(service_config, "none")).units["saijin.service"]
    (unit_dir / "saijin.service").write_text(text.replace(f"ExecStart={sys.executable}", "ExecStart=/no/such/python"))
    assert _verify(unit_dir, tmp_path).returncode != 0


def test_uninstall_removes_only_generated_units(service_config: Path, tmp_path: Path, capsys):
    unit_dir = tmp_path / "units"
    main(["service", "install", "--unit-dir", str(unit_dir), "--config", str(service_config), "--profile", "none"])
    (unit_dir / "saijin-mine.service").write_text("[Service]\nExecStart=/bin/true\n")
    assert main(["service", "uninstall", "--unit-dir", str(unit_dir)]) == 0
    assert sorted(p.name for p in unit_dir.iterdir()) == ["saijin-mine.service"]
    assert all(p.read_text().startswith(MARKER) is False for p in unit_dir.iterdir())


def test_systemd_quoting():
    assert systemd_quote("--port") == "--port"
    assert systemd_quote("/a b/c") == '"/a b/c"'
    assert systemd_quote("50%") == "50%%"
    assert systemd_quote("$HOME") == "$$HOME"
