"""Which vLLM accepts which launch flags, and which torch each vLLM release was built against.

Saijin writes one vLLM command for releases from 0.5.4 (a common pin: torch 2.4.0, Python 3.8-3.11) to
today's. Flags came and went: ``--swap-space`` (gone in 0.18, the V1 engine never swaps), the
``--no-enable-prefix-caching`` negation (argparse's BooleanOptionalAction, 0.7), bitsandbytes (0.5.0, with
``--load-format bitsandbytes`` and, before 0.6.3, only in eager mode; no longer in the quantization list of
the newest builds). The table below is the fallback; where it is cheap, the installed vLLM's own source says
which quantizations it has (read as text, without importing vLLM).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

Version = tuple[int, ...]

#: The oldest vLLM whose command line Saijin writes.
OLDEST_SUPPORTED: Version = (0, 5, 4)


@dataclass(frozen=True)
class FlagRange:
    """A flag vLLM accepts from ``since`` (inclusive) until ``until`` (exclusive; None: still accepted)."""

    flag: str
    since: Version
    until: Version | None
    note: str

    def accepted(self, version: Version | None) -> bool:
        """Unknown version means today's vLLM."""
        if version is None:
            return self.until is None
        return self.since <= version and (self.until is None or version < self.until)


#: Every optional flag Saijin may emit; the always-present ones (--model, --port, --dtype, --max-model-len,
#: --gpu-memory-utilization, --max-num-seqs, --tensor-parallel-size, --served-model-name, --host,
#: --quantization, --kv-cache-dtype, --enforce-eager, --enable-prefix-caching, --api-key) exist in 0.5.4 and in
#: every release since.
FLAG_TABLE: dict[str, FlagRange] = {r.flag: r for r in (
    FlagRange("--swap-space", (0, 1, 0), (0, 18, 0), "CPU swap for preempted sequences; the V1 engine has none"),
    FlagRange("--no-enable-prefix-caching", (0, 7, 0), None,
              "the negation of --enable-prefix-caching (before 0.7 it was off unless asked for)"),
    FlagRange("--load-format=bitsandbytes", (0, 5, 0), None, "bitsandbytes weights are loaded by their own loader"),
)}

#: bitsandbytes in-flight quantization: from 0.5.0; CUDA graphs with it from 0.6.3 (bitsandbytes 0.44).
BNB_SINCE: Version = (0, 5, 0)
BNB_EAGER_UNTIL: Version = (0, 6, 3)
#: The releases whose quantization list no longer has bitsandbytes (the installed source decides when readable).
BNB_REMOVED_BY: Version = (0, 32, 0)

#: The torch each vLLM release range pins in its CUDA wheels (vLLM's requirements): known-good pairs.
KNOWN_TORCH: tuple[tuple[Version, Version, str], ...] = (
    ((0, 5, 4), (0, 6, 3), "2.4.0"),
    ((0, 6, 4), (0, 7, 3), "2.5.1"),
    ((0, 8, 0), (0, 8, 5), "2.6.0"),
    ((0, 9, 0), (0, 9, 2), "2.7.0"),
    ((0, 10, 0), (0, 10, 1), "2.7.1"),
    ((0, 10, 2), (0, 11, 0), "2.8.0"),
)

_QUANT_LIST = re.compile(r"QuantizationMethods\s*=\s*Literal\[(.*?)\]", re.DOTALL)


def version_text(version: Version | None) -> str:
    return ".".join(map(str, version)) if version else "unknown"


def flag_accepted(flag: str, version: Version | None) -> bool:
    return FLAG_TABLE[flag].accepted(version)


def known_torch(version: Version) -> str | None:
    """The torch release a vLLM release is built against, when the table knows it."""
    for first, last, torch in KNOWN_TORCH:
        if first <= version[:3] <= last:
            return torch
    return None


def known_pairs_text() -> str:
    return ", ".join(f"vLLM {version_text(a)}-{version_text(b)} + torch {t}" if a != b else f"vLLM {version_text(a)} + torch {t}"
                     for a, b, t in KNOWN_TORCH)


def python_says(python: str, code: str) -> str | None:
    """What ``python -c code`` prints (stripped), or None when that Python cannot be run."""
    try:
        return subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def installed_quantizations(python: str) -> set[str] | None:
    """The quantization methods the vLLM of ``python`` lists in its source (read as text), or None if unreadable."""
    code = ("import importlib.util as u\n"
            "s = u.find_spec('vllm')\n"
            "print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')\n")
    out = python_says(python, code)
    if not out:
        return None
    source = Path(out) / "model_executor" / "layers" / "quantization" / "__init__.py"
    try:
        match = _QUANT_LIST.search(source.read_text(encoding="utf-8"))
    except OSError:
        return None
    return set(re.findall(r"['\"]([\w\-]+)['\"]", match.group(1))) if match else None


def bnb_supported(version: Version | None, quantizations: set[str] | None) -> bool:
    """Whether that vLLM has bitsandbytes; an unknown vLLM (not installed where Saijin looks) is given the benefit."""
    if quantizations is not None:
        return "bitsandbytes" in quantizations
    return version is None or BNB_SINCE <= version < BNB_REMOVED_BY
