"""Flags that fit the installed vLLM: a simulated 0.5.4 venv (the common pin) gets only 0.5.4's flags, the real
vLLM CPU build gets only flags its own --help lists, and the doctor names the known-good torch/vLLM pairs."""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from assistant.cli.main import main
from assistant.config.loader import load_settings
from assistant.errors import ConfigError
from assistant.ops.doctor import check_vllm, check_vllm_launch
from assistant.ops.vllm import launch_command, vllm_command
from assistant.ops.vllm_flags import installed_quantizations, known_torch
from tests.fixtures.ops import tiny_vllm_engine
from tests.fixtures.vllm import VLLM_PYTHON, free_port

#: Every option of vLLM 0.5.4's OpenAI server that Saijin may pass (from its vllm/engine/arg_utils.py and
#: vllm/entrypoints/openai/cli_args.py); 0.5.4 has no --no-enable-prefix-caching.
VLLM_054_FLAGS = {"--model", "--served-model-name", "--host", "--port", "--dtype", "--max-model-len",
                  "--gpu-memory-utilization", "--max-num-seqs", "--tensor-parallel-size", "--quantization",
                  "--load-format", "--kv-cache-dtype", "--swap-space", "--enforce-eager", "--enable-prefix-caching",
                  "--api-key"}


def _fake_vllm_venv(tmp_path: Path, vllm: str, torch: str) -> str:
    """A real venv holding vLLM and torch as pip records them (metadata and an importable, empty package)."""
    venv = tmp_path / f"vllm-{vllm}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    for name, version in (("vllm", vllm), ("torch", torch)):
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (site / name).mkdir()
        (site / name / "__init__.py").write_text("")
    return str(venv / "bin" / "python")


def _set_launch(config_dir: Path, **launch) -> None:
    path = config_dir / "profiles" / "gpu.yaml"
    profile = yaml.safe_load(path.read_text(encoding="utf-8"))
    profile["routing"]["engines"]["AI_1"]["launch"].update(launch)
    path.write_text(yaml.safe_dump(profile), encoding="utf-8")


def _printed_command(config_dir: Path, capsys) -> list[str]:
    assert main(["llm", "command", "AI_1", "--config", str(config_dir), "--profile", "gpu"]) == 0
    words = shlex.split(capsys.readouterr().out.strip())
    return words[words.index("-m") - 1:]


def test_a_vllm_0_5_4_venv_gets_only_0_5_4_flags(tmp_path: Path, config_dir: Path, capsys):
    _set_launch(config_dir, python=_fake_vllm_venv(tmp_path, "0.5.4", "2.4.0"))
    command = _printed_command(config_dir, capsys)
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    flags = {w for w in command if w.startswith("--")}
    assert flags <= VLLM_054_FLAGS, flags - VLLM_054_FLAGS
    pairs = dict(itertools.pairwise(command))
    assert pairs["--swap-space"] == "4"  # 0.5.4 still swaps
    assert pairs["--quantization"] == "bitsandbytes" and pairs["--load-format"] == "bitsandbytes"
    assert "--enforce-eager" in command  # 0.5.4 refuses bitsandbytes with CUDA graphs


def test_prefix_caching_off_is_said_only_where_the_negation_exists(tmp_path: Path, config_dir: Path, routing_writer):
    routing_writer({"AI_1": {"kind": "vllm", "base_url": "http://127.0.0.1:8100/v1", "model": "s", "model_path": "./m",
                             "launch": {"port": 8100, "enable_prefix_caching": False, "quantization": "fp8"}}})
    settings = load_settings(config_dir, "none")
    old, new = vllm_command(settings, "AI_1", (0, 5, 4)), vllm_command(settings, "AI_1", (0, 32, 0))
    assert not any(w.startswith("--") and "prefix" in w for w in old) and "--no-enable-prefix-caching" in new
    assert "--swap-space" in old and "--swap-space" not in new
    assert "--enforce-eager" not in old  # only bitsandbytes needed eager mode in 0.5.x


def test_a_vllm_without_bitsandbytes_is_told_what_to_use_instead(config_dir: Path):
    settings = load_settings(config_dir, "gpu")
    with pytest.raises(ConfigError, match=r"vLLM 0\.32\.0 has no bitsandbytes quantization — use quantization: fp8"):
        vllm_command(settings, "AI_1", (0, 32, 0), {"fp8", "awq", "gptq"})
    assert "--load-format" in vllm_command(settings, "AI_1", (0, 10, 1), None)


def test_doctor_names_the_known_good_torch_for_a_vllm(tmp_path: Path, config_dir: Path):
    assert known_torch((0, 5, 4)) == "2.4.0" and known_torch((0, 10, 2)) == "2.8.0"
    _set_launch(config_dir, python=_fake_vllm_venv(tmp_path / "bad", "0.5.4", "2.8.0"))
    [check] = list(check_vllm(load_settings(config_dir, "gpu")))
    assert check.status == "WARN", check
    assert "vLLM 0.5.4 goes with torch 2.4.0, but torch 2.8.0 is installed" in check.detail
    assert "torch==2.4.0" in check.fix and "vLLM 0.10.2-0.11.0 + torch 2.8.0" in check.detail
    _set_launch(config_dir, python=_fake_vllm_venv(tmp_path / "good", "0.5.4", "2.4.0+cu121"))
    settings = load_settings(config_dir, "gpu")
    [check] = list(check_vllm(settings))
    assert check.status == "PASS", check
    [flags] = list(check_vllm_launch(settings))
    assert flags.status == "PASS" and flags.detail.startswith("vLLM 0.5.4: ") and "--swap-space" in flags.detail


@pytest.mark.slow
def test_the_installed_cpu_build_gets_only_flags_its_help_lists(vllm_available, tiny_llama_dir, config_dir: Path,
                                                                 routing_writer):
    port = free_port()
    routing_writer({"AI_1": tiny_vllm_engine(tiny_llama_dir, port, "tiny", api_key="k", launch={
        "kv_cache_dtype": "auto", "swap_space": 4, "enable_prefix_caching": False, "enforce_eager": True})})
    settings = load_settings(config_dir, "none")
    command = launch_command(settings, "AI_1")
    listed = set(re.findall(r"--[a-z][a-z0-9-]*", subprocess.run(
        [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--help"], capture_output=True, text=True,
        timeout=300, env={"VLLM_NO_USAGE_STATS": "1", "PATH": "/usr/bin:/bin"}).stdout))
    assert "--max-model-len" in listed
    flags = {w for w in command if w.startswith("--")}
    assert flags <= listed, flags - listed
    assert "--swap-space" not in command and "--no-enable-prefix-caching" in command
    quantizations = installed_quantizations(str(VLLM_PYTHON))
    assert quantizations is not None and "fp8" in quantizations and "bitsandbytes" not in quantizations
    routing_writer({"AI_1": tiny_vllm_engine(tiny_llama_dir, port, "tiny", launch={"quantization": "bitsandbytes"})})
    [check] = list(check_vllm_launch(load_settings(config_dir, "none")))
    assert check.status == "FAIL" and "has no bitsandbytes" in check.detail and "fp8" in check.fix
