"""The shipped gpu profile on the card it is meant for: 12 GB PASSes with the arithmetic shown, 8 GB and 16 GB get
a plan that the same doctor then PASSes, and `saijin llm command AI_1` prints a launch that fits 12 GB."""

from __future__ import annotations

import itertools
import json
import shlex
from pathlib import Path

import yaml

from assistant.cli.main import main
from assistant.config.schema import EngineConfig
from assistant.ops.gpu import GIB
from assistant.ops.vram import companions, estimate_fit


def _doctor_vram(config_dir: Path, gb: float, capsys) -> dict[str, dict[str, str]]:
    main(["doctor", "--json", "--config", str(config_dir), "--profile", "gpu", "--gpu-memory-gb", str(gb)])
    return {c["name"]: c for c in json.loads(capsys.readouterr().out) if c["name"].startswith("VRAM")}


def _apply_plan(config_dir: Path, fix: str) -> None:
    """Write the doctor's 'set engines.AI_1.launch: k: v, ...; and asr.device: cpu, ...' into profiles/gpu.yaml."""
    settings = fix.split("launch: ", 1)[1].split(" — ")[0]
    launch_part, _, devices = settings.partition("; and ")
    path = config_dir / "profiles" / "gpu.yaml"
    profile = yaml.safe_load(path.read_text(encoding="utf-8"))
    launch = profile["routing"]["engines"]["AI_1"]["launch"]
    for item in launch_part.split(", "):
        key, value = item.split(": ")
        launch[key] = yaml.safe_load(value)
    for item in devices.split(" (")[0].split(", ") if devices else []:
        dotted, value = item.split(": ")
        section, key = dotted.split(".")
        profile["assistant"][section][key] = value
    path.write_text(yaml.safe_dump(profile, sort_keys=False), encoding="utf-8")


def test_the_shipped_gpu_profile_fits_a_12_gb_card_and_shows_the_arithmetic(config_dir: Path, capsys):
    checks = _doctor_vram(config_dir, 12, capsys)
    fit = checks["VRAM AI_1"]
    assert fit["status"] == "PASS", fit
    detail = fit["detail"]
    for part in ("bitsandbytes 4-bit", "KV cache 2.0 GB (4096 tokens x 4 seqs)", "runtime", "0.75 x 12 GB",
                 "Whisper large-v3-turbo", "wav2vec2", "of 12 GB"):
        assert part in detail, (part, detail)
    assert "VRAM plan AI_1" not in checks  # the shipped launch is already the best plan for 12 GB
    # The same sums, independently: vLLM's share holds weights + KV + runtime, the rest holds Whisper + wav2vec2.
    engine = EngineConfig(kind="vllm", base_url="http://127.0.0.1:8000/v1", model="s",
                          launch={"quantization": "bitsandbytes", "gpu_memory_utilization": 0.75, "max_num_seqs": 4})
    beside = companions("large-v3-turbo", "cuda", "float16", "superb/wav2vec2-base-superb-er", "cuda")
    estimate = estimate_fit("tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.3", engine, 12 * GIB, beside)
    assert estimate.kv_bytes == 32 * 8 * 128 * 2 * 2 * 4096 * 4
    assert 5.0 * GIB < estimate.weights_bytes < 6.0 * GIB
    assert estimate.weights_bytes + estimate.kv_bytes + estimate.overhead_bytes <= 0.75 * 12 * GIB
    assert 0.75 * 12 * GIB + beside.total <= 12 * GIB


def test_the_bf16_checkpoint_itself_does_not_fit_12_gb(config_dir: Path, capsys):
    path = config_dir / "profiles" / "gpu.yaml"
    profile = yaml.safe_load(path.read_text(encoding="utf-8"))
    profile["routing"]["engines"]["AI_1"]["launch"]["quantization"] = None
    path.write_text(yaml.safe_dump(profile), encoding="utf-8")
    fit = _doctor_vram(config_dir, 12, capsys)["VRAM AI_1"]
    assert fit["status"] == "FAIL" and "bfloat16" in fit["detail"]
    assert "quantization: bitsandbytes, gpu_memory_utilization: 0.75" in fit["fix"]


def test_8_gb_and_16_gb_cards_get_a_plan_that_then_passes(config_dir: Path, capsys):
    eight = _doctor_vram(config_dir, 8, capsys)
    assert eight["VRAM AI_1"]["status"] == "FAIL"
    fix = eight["VRAM AI_1"]["fix"]
    assert "for this 8 GB GPU set engines.AI_1.launch: quantization: bitsandbytes" in fix and "asr.device: cpu" in fix
    _apply_plan(config_dir, fix)
    assert _doctor_vram(config_dir, 8, capsys)["VRAM AI_1"]["status"] == "PASS"

    shipped = Path(__file__).resolve().parents[2] / "config" / "profiles" / "gpu.yaml"
    (config_dir / "profiles" / "gpu.yaml").write_text(shipped.read_text(encoding="utf-8"), encoding="utf-8")
    sixteen = _doctor_vram(config_dir, 16, capsys)
    assert sixteen["VRAM AI_1"]["status"] == "PASS"  # the 4-bit launch fits; FP8 is better and fits too
    plan = sixteen["VRAM plan AI_1"]["detail"]
    assert plan.startswith("best fit for 16 GB: quantization: fp8, gpu_memory_utilization: 0.8")
    _apply_plan(config_dir, "launch: " + plan.removeprefix("best fit for 16 GB: ").split(" (weights")[0])
    after = _doctor_vram(config_dir, 16, capsys)
    assert after["VRAM AI_1"]["status"] == "PASS" and "(fp8)" in after["VRAM AI_1"]["detail"]
    assert "VRAM plan AI_1" not in after


def test_llm_command_ai_1_prints_a_launch_that_fits_12_gb(config_dir: Path, capsys):
    assert main(["llm", "command", "AI_1", "--config", str(config_dir), "--profile", "gpu"]) == 0
    words = shlex.split(capsys.readouterr().out.strip())
    command = words[words.index("-m") - 1:]
    pairs = dict(itertools.pairwise(command))
    assert pairs["--quantization"] == "bitsandbytes" and pairs["--load-format"] == "bitsandbytes"
    launch = {"quantization": pairs["--quantization"], "max_model_len": int(pairs["--max-model-len"]),
              "gpu_memory_utilization": float(pairs["--gpu-memory-utilization"]),
              "max_num_seqs": int(pairs["--max-num-seqs"]), "dtype": pairs["--dtype"]}
    engine = EngineConfig(kind="vllm", base_url="http://127.0.0.1:8000/v1", model="s", launch=launch)
    beside = companions("large-v3-turbo", "cuda", "float16", "superb/wav2vec2-base-superb-er", "cuda")
    assert estimate_fit(pairs["--model"], engine, 12 * GIB, beside).verdict == "fits"
