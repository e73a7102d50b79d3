"""Will a vLLM engine fit its GPU? Weights (config.json, safetensors headers, dtype, quantization) plus
KV cache (layers x KV heads x head_dim x max_model_len x max_num_seqs x 2 x bytes) against GPU memory x
gpu_memory_utilization, the models the assistant keeps on the same GPU beside vLLM (Whisper, wav2vec2) in the
rest, and a launch plan (quantization, utilization, sequences) that fits when the configured one does not."""

from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from assistant.config.schema import EngineConfig, VllmLaunchConfig
from assistant.ops.gpu import GIB

#: CUDA context, activations of the profiling batch, sampler buffers: what vLLM needs besides weights and KV.
RUNTIME_OVERHEAD_BYTES = int(1.0 * GIB)
#: A 4-bit AWQ/GPTQ build: 4 bits per linear weight plus scales and zero points...
FOUR_BIT_LINEAR_BYTES = 0.5 * 1.12
#: ...and the embeddings and output head kept in 16 bits: about this much per parameter overall (Llama 3 8B AWQ
#: is 5.7 GB), when only the parameter count is known.
FOUR_BIT_BYTES_PER_PARAM = 0.7
#: bitsandbytes NF4 as vLLM applies it at load time: 4 bits per linear weight plus one fp32 absmax per block of
#: 64; the embeddings and the output head stay in 16 bits.
BNB_LINEAR_BYTES = 0.5 + 4 / 64
#: vLLM's share is capped here: above it the CUDA graphs and the sampler have no room left.
MAX_UTILIZATION = 0.90
#: Quantizations vLLM applies to a 16-bit checkpoint while loading it: bytes per linear weight.
LOAD_TIME_QUANTIZATION: dict[str, float] = {"fp8": 1.0, "fbgemm_fp8": 1.0, "bitsandbytes": BNB_LINEAR_BYTES}

DTYPE_BYTES: dict[str, float] = {
    "float32": 4, "float": 4, "fp32": 4, "float16": 2, "half": 2, "fp16": 2, "bfloat16": 2, "bf16": 2,
    "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "int8": 1, "int4": 0.5,
}
_SAFETENSORS_BYTES: dict[str, float] = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8, "F4": 0.5,
}
_FLOAT_TENSORS = {"F64", "F32", "F16", "BF16"}
_PARAMS_IN_NAME = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])")
_QUANTIZED_NAME = re.compile(r"awq|gptq|int4|4bit|4-bit|w4a16|q4", re.IGNORECASE)

Verdict = Literal["fits", "tight", "too-big", "unknown"]

#: config.json shapes of checkpoints the shipped profiles name, so that the arithmetic (KV cache included)
#: works before the model is downloaded. Matched against the model id.
KNOWN_SHAPES: tuple[tuple[re.Pattern[str], dict[str, Any]], ...] = (
    (re.compile(r"llama-?3(\.\d)?.*\b8b\b", re.IGNORECASE),  # Llama 3 / 3.1 8B and its Swallow continuation
     {"hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32, "num_key_value_heads": 8,
      "num_hidden_layers": 32, "head_dim": 128, "vocab_size": 128256, "torch_dtype": "bfloat16",
      "tie_word_embeddings": False}),
)


class SafetensorsError(ValueError):
    """A .safetensors file whose header cannot be read."""


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file (tensor names -> dtype, shape, data_offsets)."""
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise SafetensorsError(f"{path}: too short to be a safetensors file")
        (length,) = struct.unpack("<Q", head)
        if length <= 0 or length > 100 * 1024 * 1024:
            raise SafetensorsError(f"{path}: not a safetensors file (header length {length})")
        raw = handle.read(length)
    if len(raw) < length:
        raise SafetensorsError(f"{path}: truncated safetensors header")
    try:
        header = json.loads(raw)
    except ValueError:
        raise SafetensorsError(f"{path}: the safetensors header is not valid JSON") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: the safetensors header is not a mapping")
    end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    if path.stat().st_size < 8 + length + end:
        raise SafetensorsError(f"{path}: truncated ({path.stat().st_size} bytes, the header promises {8 + length + end})")
    return header


@dataclass
class TensorTotals:
    """Element counts of a model's tensors by safetensors dtype."""

    elements: dict[str, int]

    @property
    def params(self) -> int:
        return sum(self.elements.values())

    def bytes_as(self, float_bytes: float) -> float:
        """Bytes when floating tensors are held at ``float_bytes`` each and the rest as stored."""
        return sum(n * (float_bytes if dtype in _FLOAT_TENSORS else _SAFETENSORS_BYTES.get(dtype, 1))
                   for dtype, n in self.elements.items())


def safetensors_totals(folder: Path) -> TensorTotals | None:
    """Element counts over every .safetensors file in ``folder`` (headers only), or None if there are none."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    elements: dict[str, int] = {}
    for file in files:
        for name, tensor in read_safetensors_header(file).items():
            if name == "__metadata__":
                continue
            count = math.prod(int(d) for d in tensor.get("shape", []))
            elements[tensor["dtype"]] = elements.get(tensor["dtype"], 0) + count
    return TensorTotals(elements)


@dataclass
class ModelShape:
    """What config.json says about the size of a model."""

    layers: int
    kv_heads: int
    head_dim: int
    hidden: int
    vocab: int
    intermediate: int
    heads: int
    torch_dtype: str | None
    tied_embeddings: bool
    quant_bits: int | None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape | None:
        text = config.get("text_config")
        if isinstance(text, dict) and "num_hidden_layers" in text:
            merged = dict(config)
            merged.update(text)
            config = merged
        try:
            hidden = int(config["hidden_size"])
            heads = int(config["num_attention_heads"])
            layers = int(config["num_hidden_layers"])
        except (KeyError, TypeError, ValueError):
            return None
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or hidden // heads)
        quant = config.get("quantization_config")
        bits = None
        if isinstance(quant, dict):
            bits = quant.get("bits") or quant.get("w_bit") or (8 if "fp8" in str(quant.get("quant_method")) else None)
            bits = int(bits) if bits else 4
        return cls(layers, kv_heads, head_dim, hidden, int(config.get("vocab_size") or 32000),
                   int(config.get("intermediate_size") or 4 * hidden), heads,
                   config.get("torch_dtype") or config.get("dtype"), bool(config.get("tie_word_embeddings")), bits)

    def params(self) -> tuple[int, int]:
        """(linear-layer parameters, embedding parameters) of a dense decoder with a gated MLP."""
        attention = self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2
        mlp = 3 * self.hidden * self.intermediate
        linear = self.layers * (attention + mlp)
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return linear, embeddings


def served_dtype_bytes(launch_dtype: str, torch_dtype: str | None) -> tuple[str, float]:
    """The dtype vLLM computes in: launch.dtype, or for auto the model's (FP32 models are served in FP16)."""
    chosen = launch_dtype.lower()
    if chosen == "auto":
        stored = (torch_dtype or "bfloat16").lower()
        chosen = "float16" if stored in ("float32", "float") else stored
    return chosen, DTYPE_BYTES.get(chosen, 2)


def find_model_folder(source: str) -> Path | None:
    """A local folder for ``source``: the path itself, or the newest snapshot in the Hugging Face cache."""
    path = Path(os.path.expanduser(source))
    if path.is_dir():
        return path
    if path.is_absolute() or source.count("/") != 1:
        return None
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME") or "~/.cache/huggingface") / "hub")
    snapshots = hub.expanduser() / f"models--{source.replace('/', '--')}" / "snapshots"
    candidates = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime) if snapshots.is_dir() else []
    return candidates[-1].parent if candidates else None


@dataclass
class FitEstimate:
    """The memory one vLLM engine needs on one GPU against what it may take, and what to do about it."""

    verdict: Verdict
    weights_bytes: float
    kv_bytes_per_token: float | None
    kv_one_sequence_bytes: float | None
    kv_bytes: float | None
    overhead_bytes: float
    available_bytes: float
    gpu_bytes: float
    params: float | None
    dtype: str
    detail: str
    suggestion: str
    beside_bytes: float = 0.0
    #: The best launch for this GPU by the same arithmetic (None when the shape is unknown or none fits).
    plan: LaunchPlan | None = None


def estimate_fit(source: str, engine: EngineConfig, gpu_bytes: float, beside: Companions | None = None) -> FitEstimate:
    """Estimate whether the model ``source`` (a folder or a hub id) fits under ``engine.launch`` on a GPU with
    ``gpu_bytes`` of memory, with ``beside`` (the assistant's own CUDA models) in what vLLM leaves."""
    launch = engine.launch or VllmLaunchConfig()
    folder = find_model_folder(source)
    config: dict[str, Any] | None = None
    if folder is not None and (folder / "config.json").is_file():
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = None
    shape = ModelShape.from_config(config) if isinstance(config, dict) else None
    shape_note = ""
    if shape is None:
        for pattern, known in KNOWN_SHAPES:
            if pattern.search(source.rsplit("/", 1)[-1]):
                shape, shape_note = ModelShape.from_config(known), " (shape of the known architecture; not downloaded)"
                break
    dtype, dtype_bytes = served_dtype_bytes(launch.dtype, shape.torch_dtype if shape else None)
    quantized = bool(shape and shape.quant_bits) or bool(launch.quantization) or bool(_QUANTIZED_NAME.search(source))
    tp = launch.tensor_parallel_size

    params: float | None = None
    weights: float | None = None
    totals = safetensors_totals(folder) if folder is not None else None
    if shape is not None:
        linear, embeddings = shape.params()
        params = float(linear + embeddings)
        if shape.quant_bits is None and launch.quantization in LOAD_TIME_QUANTIZATION:
            weights = linear * LOAD_TIME_QUANTIZATION[launch.quantization] + embeddings * dtype_bytes
        elif shape.quant_bits is not None and totals is None:
            weights = linear * shape.quant_bits / 8 * 1.12 + embeddings * min(dtype_bytes, 2)
    if weights is None and totals is not None:
        weights = totals.bytes_as(dtype_bytes)
        if launch.quantization in LOAD_TIME_QUANTIZATION and not (shape and shape.quant_bits):
            weights = weights / dtype_bytes * LOAD_TIME_QUANTIZATION[launch.quantization]
        params = params or float(totals.params)
    if weights is None and shape is not None:
        weights = params * dtype_bytes  # type: ignore[operator]
    if weights is None:
        match = _PARAMS_IN_NAME.search(source.rsplit("/", 1)[-1])
        if match is None:
            return FitEstimate("unknown", 0, None, None, None, RUNTIME_OVERHEAD_BYTES, gpu_bytes * launch.gpu_memory_utilization,
                               gpu_bytes, None, dtype,
                               f"cannot size {source}: no local config.json and no parameter count in its name",
                               "download the model to a local folder and set model_path to it")
        params = float(match.group(1)) * 1e9
        weights = params * (FOUR_BIT_BYTES_PER_PARAM if quantized else dtype_bytes)

    kv_per_token = None
    if shape is not None:
        kv_bytes_each = DTYPE_BYTES.get((launch.kv_cache_dtype or "auto").lower(), dtype_bytes)
        if (launch.kv_cache_dtype or "auto").lower().startswith("fp8"):
            kv_bytes_each = 1
        kv_per_token = 2 * shape.layers * shape.kv_heads * shape.head_dim * kv_bytes_each
    four_bit = (shape.params()[0] * FOUR_BIT_LINEAR_BYTES + shape.params()[1] * 2) if shape else \
        (params or weights / 2) * FOUR_BIT_BYTES_PER_PARAM
    if launch.quantization in LOAD_TIME_QUANTIZATION and not (shape and shape.quant_bits):
        dtype = {"bitsandbytes": "bitsandbytes 4-bit"}.get(launch.quantization, "fp8")
    fit = _judge(launch, gpu_bytes, weights / tp, kv_per_token / tp if kv_per_token else None, params, dtype,
                 quantized and launch.quantization not in LOAD_TIME_QUANTIZATION, four_bit / tp, beside or Companions())
    fit.detail += shape_note
    if fit.verdict != "unknown" and shape is not None and not shape.quant_bits:
        linear, embeddings = shape.params()
        kv16 = 2 * shape.layers * shape.kv_heads * shape.head_dim * 2
        fit.plan = plan_launch(linear / tp, embeddings / tp, kv16 / tp, gpu_bytes, beside or Companions(),
                               launch.max_model_len, launch.max_num_seqs)
    return fit


def _gb(value: float) -> str:
    return f"{value / GIB:.1f} GB"


def _size_name(params: float | None) -> str:
    """8.03e9 -> 'an 8B model', 1.5e9 -> 'a 1.5B model'."""
    if not params or params < 1e8:
        return "this model"
    billions = params / 1e9
    text = f"{billions:.0f}" if billions >= 9.95 else f"{billions:.1f}".removesuffix(".0")
    article = "an" if text.startswith(("8", "11", "18")) and not text.startswith("1.") else "a"
    return f"{article} {text}B model"


def _judge(launch: VllmLaunchConfig, gpu_bytes: float, weights: float, kv_per_token: float | None,
           params: float | None, dtype: str, quantized: bool, four_bit: float, beside: Companions) -> FitEstimate:
    available = gpu_bytes * launch.gpu_memory_utilization
    overhead = RUNTIME_OVERHEAD_BYTES
    one_seq = kv_per_token * launch.max_model_len if kv_per_token else None
    full = one_seq * launch.max_num_seqs if one_seq else None
    gpu_text = f"this GPU has {gpu_bytes / GIB:.0f} GB ({_gb(available)} at gpu_memory_utilization {launch.gpu_memory_utilization:g})"
    size = _size_name(params)
    kv_text = f" + KV cache {_gb(full)} ({launch.max_model_len} tokens x {launch.max_num_seqs} seqs)" if full else ""
    parts = f"weights {_gb(weights)} ({dtype})" + kv_text + f" + ~{_gb(overhead)} runtime" \
        + ("" if full else "; KV cache not counted without config.json")
    need = weights + (full or 0) + overhead

    def estimate(verdict: Verdict, detail: str, suggestion: str) -> FitEstimate:
        return FitEstimate(verdict, weights, kv_per_token, one_seq, full, overhead, available, gpu_bytes, params, dtype,
                           detail, suggestion, beside.total)

    if weights + overhead + (one_seq or 0) > available:
        if weights + overhead > available:
            detail = f"{size} in {dtype if not quantized else 'its quantized form'} needs about {_gb(weights)} for weights; {gpu_text}"
            if quantized:
                fix = "use a smaller model, a GPU with more memory, or tensor_parallel_size over several GPUs"
            else:
                fix = (f"use an AWQ/GPTQ 4-bit build (about {_gb(four_bit)}; set model_path to it and quantization: awq "
                       f"or gptq) or a smaller model")
                if launch.gpu_memory_utilization < 0.9 and weights + overhead <= gpu_bytes * 0.95:
                    fix += ", or raise gpu_memory_utilization"
            return estimate("too-big", detail, fix)
        room = available - weights - overhead
        fit_len = int(room // kv_per_token // 256 * 256) if kv_per_token else 0
        detail = (f"{size} fits ({_gb(weights)} of weights) but one sequence of max_model_len {launch.max_model_len} "
                  f"needs {_gb(one_seq or 0)} of KV cache and only {_gb(room)} is left; {gpu_text}")
        fix = (f"lower max_model_len to {fit_len}" if fit_len >= 256 else "use a smaller or 4-bit model") + \
            (", or set kv_cache_dtype: fp8" if not (launch.kv_cache_dtype or "").startswith("fp8") else "") + \
            ", or raise gpu_memory_utilization"
        return estimate("too-big", detail, fix)
    if beside.total and available + beside.total > gpu_bytes:
        detail = (f"vLLM may take {_gb(available)} (gpu_memory_utilization {launch.gpu_memory_utilization:g} x "
                  f"{gpu_bytes / GIB:.0f} GB) but {beside.text()} need {_gb(beside.total)} beside it: "
                  f"{_gb(available)} + {_gb(beside.total)} > {gpu_bytes / GIB:.0f} GB")
        most = math.floor((gpu_bytes - beside.total) / gpu_bytes * 20) / 20
        fix = (f"lower gpu_memory_utilization to {most:g}" if most * gpu_bytes >= need else
               "quantize the model (see the plan below) or run Whisper / the emotion model on the CPU")
        return estimate("too-big", detail, fix)
    whole = (f"; beside it {beside.text()} = {_gb(beside.total)}; {_gb(available)} + {_gb(beside.total)} = "
             f"{_gb(available + beside.total)} of {gpu_bytes / GIB:.0f} GB") if beside.total else ""
    if full is not None and need > available:
        seqs = int((available - weights - overhead) // (one_seq or 1))
        detail = (f"needs about {_gb(need)} ({parts}) of {_gb(available)}: the KV cache holds {seqs} of max_num_seqs "
                  f"{launch.max_num_seqs} full-length sequences" + whole)
        return estimate("tight", detail, f"fine for one speaker; to silence this set max_num_seqs: {max(seqs, 1)} "
                                         f"or lower max_model_len")
    return estimate("fits", f"vLLM needs about {_gb(need)} ({parts}) of its {_gb(available)} "
                            f"(gpu_memory_utilization {launch.gpu_memory_utilization:g} x {gpu_bytes / GIB:.0f} GB)"
                    + whole, "")


# --------------------------------------------------------------------------------------------------
# What the assistant keeps on the GPU beside vLLM, and a launch plan that fits
# --------------------------------------------------------------------------------------------------

#: faster-whisper checkpoints: parameters.
WHISPER_PARAMS: dict[str, float] = {
    "tiny": 39e6, "base": 74e6, "small": 244e6, "medium": 769e6, "large-v1": 1550e6, "large-v2": 1550e6,
    "large-v3": 1550e6, "large": 1550e6, "large-v3-turbo": 809e6, "turbo": 809e6, "distil-large-v3": 756e6,
}
#: Whisper's encoder output, beam search and CTranslate2's allocator cache for a 30 s window.
WHISPER_WORK_BYTES = 0.3 * GIB
#: The CUDA context the assistant's process opens (torch and CTranslate2 share it).
CUDA_CONTEXT_BYTES = 0.4 * GIB
_COMPUTE_BYTES = {"float16": 2, "bfloat16": 2, "int8_float16": 1, "int8_bfloat16": 1, "int8": 1, "float32": 4,
                  "int8_float32": 1, "auto": 2, "default": 2}


@dataclass(frozen=True)
class Companions:
    """The assistant's own models on the same GPU (outside vLLM's gpu_memory_utilization share)."""

    parts: tuple[tuple[str, float], ...] = ()

    @property
    def total(self) -> float:
        return sum(b for _, b in self.parts) + (CUDA_CONTEXT_BYTES if self.parts else 0)

    def text(self) -> str:
        items = [f"{name} {_gb(size)}" for name, size in self.parts]
        if self.parts:
            items.append(f"CUDA context {_gb(CUDA_CONTEXT_BYTES)}")
        return " + ".join(items)


def companions(asr_model: str, asr_device: str, asr_compute: str, emotion_model: str | None,
               emotion_device: str) -> Companions:
    """Whisper (when on CUDA) and the wav2vec2 emotion model (when on CUDA, None when off) in bytes."""
    parts: list[tuple[str, float]] = []
    if asr_device == "cuda":
        name = asr_model.rsplit("/", 1)[-1].removeprefix("faster-whisper-").removeprefix("whisper-")
        params = WHISPER_PARAMS.get(name, WHISPER_PARAMS["large-v3"] if "large" in name else WHISPER_PARAMS["small"])
        parts.append((f"Whisper {name}", params * _COMPUTE_BYTES.get(asr_compute, 2) + WHISPER_WORK_BYTES))
    if emotion_model is not None and emotion_device == "cuda":
        params = 317e6 if "large" in emotion_model else 95e6
        parts.append((f"emotion {emotion_model.rsplit('/', 1)[-1]}", params * 4 + 0.1 * GIB))  # float32
    return Companions(tuple(parts))


@dataclass(frozen=True)
class LaunchPlan:
    """A vLLM launch that fits: the settings to write into routing.yaml's launch section."""

    quantization: str | None
    gpu_memory_utilization: float
    max_model_len: int
    max_num_seqs: int
    companions_on_gpu: bool
    weights_bytes: float
    need_bytes: float

    def settings_text(self) -> str:
        text = (f"quantization: {self.quantization or 'null'}, gpu_memory_utilization: {self.gpu_memory_utilization:g}, "
                f"max_model_len: {self.max_model_len}, max_num_seqs: {self.max_num_seqs}")
        if not self.companions_on_gpu:
            text += "; and asr.device: cpu, emotion.device: cpu (Whisper and wav2vec2 leave the GPU)"
        return text


def plan_launch(linear: float, embeddings: float, kv16_per_token: float, gpu_bytes: float, beside: Companions,
                max_model_len: int, max_num_seqs: int) -> LaunchPlan | None:
    """The first launch that fits, best first: the companions stay on the GPU if at all possible (voice latency),
    then the lightest quantization (bf16, FP8, bitsandbytes 4-bit), then the most sequences of the configured length
    (halved down to 1), then half the length."""
    for on_gpu in (True, False):
        rest = beside.total if on_gpu else 0.0
        util = min(MAX_UTILIZATION, math.floor((gpu_bytes - rest) / gpu_bytes * 20) / 20)
        share = util * gpu_bytes
        for quantization, linear_bytes in ((None, 2.0), ("fp8", 1.0), ("bitsandbytes", BNB_LINEAR_BYTES)):
            weights = linear * linear_bytes + embeddings * 2
            for length in (max_model_len, max_model_len // 2):
                seqs = max_num_seqs
                while seqs >= 1:
                    need = weights + RUNTIME_OVERHEAD_BYTES + kv16_per_token * length * seqs
                    if need <= share:
                        return LaunchPlan(quantization, util, length, seqs, on_gpu, weights, need)
                    seqs //= 2
    return None
