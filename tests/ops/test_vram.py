"""VRAM estimates from real file formats: config.json and safetensors headers, dtype, quantization, KV cache."""

from __future__ import annotations

import json
from pathlib import Path

from assistant.config.schema import EngineConfig
from assistant.ops.gpu import GIB, parse_nvidia_smi
from assistant.ops.vram import estimate_fit, safetensors_totals, served_dtype_bytes
from tests.fixtures.ops import LLAMA_8B_CONFIG, make_hf_model


def _engine(**launch) -> EngineConfig:
    return EngineConfig(kind="vllm", base_url="http://127.0.0.1:8000/v1", model="m", launch=launch)


def test_weights_come_from_safetensors_headers(tmp_path: Path):
    folder = make_hf_model(tmp_path / "m")
    totals = safetensors_totals(folder)
    assert totals is not None
    assert 8.0e9 < totals.params < 8.1e9  # Llama 3.1 8B has 8.03 billion parameters
    fit = estimate_fit(str(folder), _engine(), 80 * GIB)
    assert abs(fit.weights_bytes - totals.params * 2) < 1e6


def test_kv_cache_is_layers_x_kv_heads_x_head_dim_x_tokens_x_2_x_bytes(tmp_path: Path):
    folder = make_hf_model(tmp_path / "m")
    fit = estimate_fit(str(folder), _engine(max_model_len=4096, max_num_seqs=8), 80 * GIB)
    assert fit.kv_bytes_per_token == 32 * 8 * 128 * 2 * 2
    assert fit.kv_bytes == 32 * 8 * 128 * 2 * 2 * 4096 * 8
    fp8 = estimate_fit(str(folder), _engine(max_model_len=4096, max_num_seqs=8, kv_cache_dtype="fp8"), 80 * GIB)
    assert fp8.kv_bytes == fit.kv_bytes / 2


def test_a_long_context_gets_a_max_model_len_that_fits(tmp_path: Path):
    folder = make_hf_model(tmp_path / "m")
    fit = estimate_fit(str(folder), _engine(quantization="fp8", max_model_len=32768, gpu_memory_utilization=0.85),
                       12 * GIB)
    assert fit.verdict == "too-big"
    suggested = int(fit.suggestion.split("lower max_model_len to ")[1].split(",")[0])
    assert 256 <= suggested < 32768
    assert fit.weights_bytes + fit.overhead_bytes + suggested * fit.kv_bytes_per_token <= fit.available_bytes


def test_a_4bit_build_fits_12_gb(tmp_path: Path):
    config = {**LLAMA_8B_CONFIG, "torch_dtype": "float16", "quantization_config": {"quant_method": "awq", "bits": 4}}
    folder = tmp_path / "awq"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    fit = estimate_fit(str(folder), _engine(quantization="awq", max_model_len=4096, max_num_seqs=4,
                                            gpu_memory_utilization=0.85), 12 * GIB)
    assert fit.verdict == "fits", fit.detail
    assert 4.5 * GIB < fit.weights_bytes < 6.5 * GIB


def test_a_hub_name_is_sized_from_the_parameter_count_in_its_name():
    fit = estimate_fit("tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.3", _engine(), 12 * GIB)
    assert fit.verdict == "too-big" and "an 8B model" in fit.detail
    unknown = estimate_fit("someone/mystery-model", _engine(), 12 * GIB)
    assert unknown.verdict == "unknown"


def test_auto_dtype_serves_fp32_models_in_fp16():
    assert served_dtype_bytes("auto", "float32") == ("float16", 2)
    assert served_dtype_bytes("auto", "bfloat16") == ("bfloat16", 2)
    assert served_dtype_bytes("float32", "bfloat16") == ("float32", 4)


def test_nvidia_smi_rows_are_read():
    [gpu] = parse_nvidia_smi("0, NVIDIA GeForce RTX 4070 Ti, 12282, 1034\n")
    assert gpu.name == "NVIDIA GeForce RTX 4070 Ti" and round(gpu.total_gb, 1) == 12.0
    assert gpu.used_bytes == 1034 * 1024**2
