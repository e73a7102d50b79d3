"""The vLLM launcher: the command line from routing.yaml, and a REAL vLLM CPU engine served, shown, stopped."""

from __future__ import annotations

import itertools
import json
import shlex
from pathlib import Path

import httpx
import pytest

from assistant.cli.main import main
from assistant.config.loader import load_settings
from assistant.errors import EngineUnavailable
from assistant.ops.vllm import (
    VllmProcess,
    parse_version,
    running_state,
    stop_process_group,
    vllm_command,
    vllm_version,
)
from tests.fixtures.ops import tiny_vllm_engine
from tests.fixtures.vllm import VLLM_PYTHON, free_port


def test_the_command_carries_the_routing_settings(config_dir: Path, capsys):
    assert main(["llm", "command", "AI_1", "--config", str(config_dir), "--profile", "gpu"]) == 0
    line = capsys.readouterr().out.strip()
    words = shlex.split(line)
    assert "VLLM_NO_USAGE_STATS=1" in words
    command = words[words.index("-m") - 1:]
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    pairs = dict(itertools.pairwise(command))
    assert pairs["--model"] == "tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.3"
    assert pairs["--served-model-name"] == "swallow-8b"
    assert pairs["--port"] == "8000" and pairs["--host"] == "127.0.0.1"
    assert pairs["--max-model-len"] == "4096" and pairs["--gpu-memory-utilization"] == "0.75"
    assert pairs["--dtype"] == "auto" and pairs["--tensor-parallel-size"] == "1" and pairs["--max-num-seqs"] == "4"
    assert "--enable-prefix-caching" in command


def test_optional_settings_and_swap_space_by_vllm_version(config_dir: Path, routing_writer, tmp_path: Path):
    routing_writer({"AI_1": {"kind": "vllm", "base_url": "http://127.0.0.1:8100/v1", "model": "s", "model_path": "./m",
                             "launch": {"port": 8100, "quantization": "awq", "kv_cache_dtype": "fp8", "swap_space": 8,
                                        "enforce_eager": True, "enable_prefix_caching": False,
                                        "extra_args": ["--seed", "7"], "python": "../venvs/vllm/bin/python"}}})
    settings = load_settings(config_dir, "none")
    new = vllm_command(settings, "AI_1", (0, 32, 0))
    old = vllm_command(settings, "AI_1", (0, 10, 1))
    assert new[0] == str((config_dir / "../venvs/vllm/bin/python").absolute())
    assert new[new.index("--model") + 1] == str((config_dir / "m").absolute())
    for flag, value in (("--quantization", "awq"), ("--kv-cache-dtype", "fp8")):
        assert new[new.index(flag) + 1] == value
    assert "--enforce-eager" in new and "--no-enable-prefix-caching" in new and new[-2:] == ["--seed", "7"]
    assert "--swap-space" not in new  # vLLM 0.18 dropped it
    assert old[old.index("--swap-space") + 1] == "8"
    assert parse_version("0.32.0+cpu") == (0, 32, 0) and parse_version("0.10.1rc1") == (0, 10, 1)


def test_the_installed_vllm_version_is_read(vllm_available):
    assert vllm_version(str(VLLM_PYTHON)) == (0, 32, 0)


async def test_a_dying_engine_is_reported_in_one_line(vllm_available, tiny_llama_dir, config_dir: Path, routing_writer):
    port = free_port()
    routing_writer({"TINY": tiny_vllm_engine(tiny_llama_dir, port, "tiny", launch={"extra_args": ["--no-such-flag"]})})
    process = VllmProcess(load_settings(config_dir, "none"), "TINY")
    process.start()
    try:
        with pytest.raises(EngineUnavailable) as caught:
            await process.wait_ready(timeout=120)
    finally:
        await process.stop()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("TINY (vLLM) exited with code 2: ")
    assert "--no-such-flag" in message and str(process.log_path) in message


@pytest.mark.slow
def test_serve_brings_a_real_engine_up_and_status_shows_it(vllm_available, tiny_llama_dir, config_dir: Path,
                                                           routing_writer, capsys):
    port = free_port()
    routing_writer({"TINY": tiny_vllm_engine(tiny_llama_dir, port, "tiny-served")})
    args = ["--config", str(config_dir), "--profile", "none"]
    settings = load_settings(config_dir, "none")
    try:
        assert main(["llm", "serve", "TINY", "--detach", *args]) == 0
        out = capsys.readouterr().out
        assert f"TINY: ready at http://127.0.0.1:{port}/v1 serving 'tiny-served'" in out
        state = running_state(settings, "TINY")
        assert state is not None and state.port == port

        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60,
                           json={"model": "tiny-served", "max_tokens": 4,
                                 "messages": [{"role": "user", "content": "こんばんは"}]})
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] >= 1

        assert main(["status", "--json", *args]) == 0
        engines = {e["name"]: e for e in json.loads(capsys.readouterr().out)["engines"]}
        assert engines["TINY"]["state"] == "up" and engines["TINY"]["pid"] == state.pid
        assert engines["TINY"]["port"] == port and engines["TINY"]["uptime_s"] > 0

        assert main(["llm", "serve", "TINY", *args]) == 0  # already running: nothing new is started
        assert "already running" in capsys.readouterr().out
        assert settings.data_dir.joinpath("logs", "TINY.log").read_text().count("saijin starts TINY") == 1

        assert main(["llm", "stop", "TINY", *args]) == 0
        assert running_state(settings, "TINY") is None
        assert main(["llm", "status", "TINY", "--json", *args]) == 0
        assert json.loads(capsys.readouterr().out.split("\n", 1)[1])[0]["state"] == "down"
    finally:
        state = running_state(settings, "TINY")
        if state is not None:
            stop_process_group(state.pid)
