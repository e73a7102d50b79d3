"""`saijin models download ENGINE`: fetch a vLLM engine's model into the folder its model path — or the end of
its symlink chain — points to, then check the folder is complete: config.json, a tokenizer, every shard the
safetensors index names, and every file at the hub's size.

huggingface_hub's snapshot_download fetches the small files (config, tokenizer, index) with its progress bars.
The weight files (the hub's LFS files) are fetched here with a Range request into a stable
``.cache/saijin/NAME.part`` next to them, so that a download killed mid-file continues where it stopped: since
huggingface_hub 1.x a killed snapshot_download starts each file again (it writes to a file named per process).
The bytes are checked against the hub's sha256 before the file takes its place."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from assistant.config.loader import Settings
from assistant.errors import ConfigError, UsageError
from assistant.ops.links import unmounted_drive, walk_links
from assistant.ops.vram import SafetensorsError, read_safetensors_header

#: Never fetched: the original Meta checkpoints (consolidated.*.pth, as large as the model again) and GGUFs.
IGNORE_PATTERNS = ["original/*", "*.pth", "*.gguf", "*.onnx"]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")


@dataclass(frozen=True)
class DownloadTarget:
    """What to fetch (repo id, revision) and where (a folder; None: the Hugging Face cache)."""

    engine: str
    repo_id: str
    revision: str | None
    folder: Path | None
    #: The configured path, when it differs from the folder (a symlink chain leads there).
    configured: Path | None


def download_target(settings: Settings, name: str) -> DownloadTarget:
    """Where `saijin models download NAME` puts the model: model_path's folder (through its links), fetched from
    hub_id; or, when model_path is itself a hub id, the Hugging Face cache."""
    engine = settings.routing.engines.get(name)
    if engine is None:
        raise UsageError(f"no engine named {name!r} in routing.yaml (engines: {', '.join(settings.routing.engines)})")
    if engine.kind == "ollama":
        raise UsageError(f"{name} is an Ollama model: fetch it with `ollama pull {engine.model}`")
    if engine.kind != "vllm":
        raise UsageError(f"{name} is kind {engine.kind}: only vLLM engines have a model to download "
                         f"(embedded offline:NAME models are assembled from installed packages)")
    value = engine.model_path or engine.model
    expanded = os.path.expanduser(value)
    looks_local = os.path.isabs(expanded) or expanded.startswith(".") or os.path.lexists(settings.config_dir / expanded)
    if not looks_local:
        return DownloadTarget(name, engine.hub_id or value, engine.hub_revision, None, None)
    if not engine.hub_id:
        raise ConfigError(f"engines.{name}.model_path is the local folder {value} — set engines.{name}.hub_id to the "
                          f"Hugging Face repo to fetch into it (e.g. tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.3)")
    configured = Path(expanded) if os.path.isabs(expanded) else (settings.config_dir / expanded).absolute()
    chain = walk_links(configured)
    if chain.loop:
        raise ConfigError(f"{chain.text()}: a symlink loop — repoint one link (ln -sfn /real/folder {configured})")
    letter = unmounted_drive(chain.missing) if chain.missing is not None else None
    if letter:
        raise ConfigError(f"{chain.text()}: /mnt/{letter} is empty (the Windows drive is not mounted) — "
                          f"sudo mount -t drvfs {letter.upper()}: /mnt/{letter}, then run this again")
    folder = Path(os.path.realpath(configured))  # where the chain ends, existing or not yet
    return DownloadTarget(name, engine.hub_id, engine.hub_revision, folder, configured if folder != configured else None)


@dataclass
class Completeness:
    """The result of checking a downloaded folder."""

    ok: bool
    problems: list[str]
    files: int
    total_bytes: int

    def text(self) -> str:
        if self.ok:
            return f"complete: config, tokenizer, {self.files} files, {self.total_bytes / 1e9:.2f} GB"
        return "incomplete: " + "; ".join(self.problems)


def check_complete(folder: Path, expected_sizes: dict[str, int] | None = None) -> Completeness:
    """config.json, a tokenizer, every shard in model.safetensors.index.json, readable safetensors headers, and each
    file at its expected size (the hub's listing) when known."""
    problems: list[str] = []
    if not (folder / "config.json").is_file():
        problems.append("no config.json")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        problems.append(f"no tokenizer ({' / '.join(TOKENIZER_FILES)})")
    index = folder / "model.safetensors.index.json"
    shards: set[str] = set()
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        except (OSError, ValueError):
            problems.append(f"{index.name} is not valid JSON")
    missing = sorted(s for s in shards if not (folder / s).is_file())
    if missing:
        problems.append(f"{len(missing)} of {len(shards)} shards missing (e.g. {missing[0]})")
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("pytorch_model*.bin"))
    if not weights and not missing:
        problems.append("no weights (*.safetensors)")
    for file in sorted(folder.glob("*.safetensors")):
        try:
            read_safetensors_header(file)
        except (SafetensorsError, OSError) as exc:
            problems.append(str(exc))
    total = 0
    files = 0
    for name, size in (expected_sizes or {}).items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} missing")
            continue
        have = path.stat().st_size
        if have != size:
            problems.append(f"{name} is {have} bytes, the hub has {size}")
    for path in folder.rglob("*"):
        if path.is_file() and ".cache" not in path.relative_to(folder).parts:
            files += 1
            total += path.stat().st_size
    return Completeness(not problems, problems, files, total)


def download(target: DownloadTarget, endpoint: str | None = None, max_workers: int = 4) -> tuple[Path, Completeness]:
    """Fetch the snapshot (resuming partial files) and check it. Progress bars go to the terminal (tqdm)."""
    for switch in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # asked to download: offline switches do not apply
        os.environ.pop(switch, None)
    import httpx
    import huggingface_hub
    from huggingface_hub import HfApi, RepoFile, snapshot_download

    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise ConfigError("huggingface_hub was loaded in offline mode — run `saijin models download` without "
                          "HF_HUB_OFFLINE=1")
    if target.folder is not None:
        target.folder.mkdir(parents=True, exist_ok=True)
    try:
        api = HfApi(endpoint=endpoint)
        listing = [f for f in api.list_repo_tree(target.repo_id, recursive=True, revision=target.revision)
                   if isinstance(f, RepoFile) and not any(_ignored(f.path, p) for p in IGNORE_PATTERNS)]
        sizes = {f.path: int(f.size) for f in listing}
        large = [(f, f.lfs) for f in listing if f.lfs is not None] if target.folder is not None else []
        path = Path(snapshot_download(target.repo_id, revision=target.revision, local_dir=target.folder,
                                      ignore_patterns=IGNORE_PATTERNS + [f.path for f, _lfs in large],
                                      max_workers=max_workers, endpoint=endpoint))
        for entry, lfs in large:
            fetch_resumable(target, entry.path, int(entry.size), lfs.sha256, endpoint)
    except huggingface_hub.errors.HfHubHTTPError as exc:
        raise ConfigError(f"cannot fetch {target.repo_id}: {str(exc).splitlines()[0]} — check the repo id "
                          f"(hub_id / model_path), and `hf auth login` for a gated model") from None
    except (OSError, httpx.HTTPError) as exc:
        raise ConfigError(f"cannot fetch {target.repo_id}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} — check the network and HF_ENDPOINT, then run this "
                          f"again (it resumes)") from None
    return path, check_complete(path, sizes)


def fetch_resumable(target: DownloadTarget, name: str, size: int, sha256: str | None, endpoint: str | None) -> None:
    """One file into target.folder: continue its .part with a Range request, check the sha256, move it in place."""
    import hashlib

    import httpx
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers
    from tqdm.auto import tqdm

    assert target.folder is not None
    final = target.folder / name
    if final.is_file() and final.stat().st_size == size:
        return
    part = target.folder / ".cache" / "saijin" / f"{name}.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.is_file() else 0
    if have > size:
        part.unlink()
        have = 0
    url = hf_hub_url(target.repo_id, name, revision=target.revision, endpoint=endpoint)
    headers = build_hf_headers()
    if have < size:
        if have:
            headers["Range"] = f"bytes={have}-"
        with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=httpx.Timeout(30, read=120)) as response:
            response.raise_for_status()
            mode = "ab" if have and response.status_code == 206 else "wb"
            with part.open(mode) as out, tqdm(total=size, initial=have if mode == "ab" else 0, unit="B",
                                              unit_scale=True, desc=name + (" (resumed)" if mode == "ab" else "")) as bar:
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)
                    out.flush()
                    bar.update(len(chunk))
    if part.stat().st_size != size:
        raise OSError(f"{name}: got {part.stat().st_size} of {size} bytes")
    if sha256:
        digest = hashlib.sha256()
        with part.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        if digest.hexdigest() != sha256:
            part.unlink()
            raise OSError(f"{name}: the sha256 does not match the hub's (the partial file was removed)")
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, final)


def _ignored(path: str, pattern: str) -> bool:
    from fnmatch import fnmatch

    return fnmatch(path, pattern)
