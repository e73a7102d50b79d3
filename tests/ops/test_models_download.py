"""`saijin models download AI_1` against a local stand-in of the hub (HF_ENDPOINT on loopback): it fills the empty
folder at the end of a symlink chain, resumes a file after the download is killed mid-file, checks the result is
complete, and the doctor then PASSes the model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant.config.loader import load_settings
from assistant.ops.doctor import check_models
from assistant.ops.model_download import check_complete, download_target
from tests.fixtures.ops import write_safetensors
from tests.ops.hub_standin import HubRepo, serve_hub

REPO = "tokyotech-llm/Swallow-standin"
CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256, "intermediate_size": 512,
          "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 4096,
          "torch_dtype": "bfloat16"}


def _repo(tmp_path: Path) -> HubRepo:
    """Two real safetensors shards of 4 MB, an index naming them, config, tokenizer; and an ignored original/."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {"config.json": json.dumps(CONFIG).encode(), "tokenizer.json": b'{"model": {}}',
                               "tokenizer_config.json": b"{}", "original/consolidated.00.pth": b"x" * 1000}
    weight_map = {}
    for number in (1, 2):
        name = f"model-0000{number}-of-00002.safetensors"
        path = tmp_path / name
        write_safetensors(path, {f"layer{number}.weight": ("BF16", [1024, 2048])}, sparse=False)
        files[name] = path.read_bytes()
        weight_map[f"layer{number}.weight"] = name
    files["model.safetensors.index.json"] = json.dumps({"metadata": {}, "weight_map": weight_map}).encode()
    return HubRepo(REPO, files, slow_from=1 << 20, rate=1 << 20)


def _linked_empty_folder(root: Path) -> tuple[Path, Path]:
    """mnt/sai/models/Swallow/Swallow-9B -> mnt/f/saijinos/models/Swallow-9B (an empty folder): the seed's layout."""
    target = root / "mnt" / "f" / "saijinos" / "models" / "Swallow-9B"
    target.mkdir(parents=True)
    link = root / "mnt" / "sai" / "models" / "Swallow" / "Swallow-9B"
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    return link, target


def _download(config_dir: Path, endpoint: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1", "HF_HUB_ETAG_TIMEOUT": "30",
           "HF_HOME": str(config_dir.parent / "hf-home")}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("TRANSFORMERS_OFFLINE", None)
    code = "import sys; from assistant.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, "models", "download", "AI_1", "--config", str(config_dir),
                             "--profile", "none", "--max-workers", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
                            cwd=Path(__file__).resolve().parents[2])


@pytest.mark.slow
def test_download_fills_the_linked_folder_resumes_after_a_kill_and_the_doctor_passes(tmp_path: Path, config_dir: Path,
                                                                                      routing_writer):
    link, target = _linked_empty_folder(tmp_path)
    routing_writer({"AI_1": {"kind": "vllm", "base_url": "http://127.0.0.1:8000/v1", "model": "swallow",
                             "model_path": str(link), "hub_id": REPO, "launch": {"port": 8000}}})
    before = next(c for c in check_models(load_settings(config_dir, "none")) if c.name == "model AI_1")
    assert before.status == "FAIL" and "saijin models download AI_1" in before.fix
    repo = _repo(tmp_path / "src")
    with serve_hub(repo) as endpoint:
        first = _download(config_dir, endpoint)
        deadline = time.monotonic() + 120
        partial: list[Path] = []
        while time.monotonic() < deadline and first.poll() is None:
            partial = [p for p in target.rglob("*.part") if p.stat().st_size > 0]
            if partial:
                break
            time.sleep(0.05)
        assert partial, f"no partial file appeared: {first.poll()} {first.stdout.read() if first.stdout else ''}"
        os.killpg(first.pid, signal.SIGKILL)  # interrupted mid-file
        first.wait(30)
        shards = [target / n for n in repo.files if n.endswith(".safetensors")]
        assert not all(s.is_file() for s in shards)
        resumed_at = max(p.stat().st_size for p in target.rglob("*.part"))
        assert resumed_at > 0

        repo.rate = 1 << 30
        second = _download(config_dir, endpoint)
        out, _ = second.communicate(timeout=180)
    assert second.returncode == 0, out
    assert f"into {target} (the end of {link}'s links)" in out and "complete: config, tokenizer" in out
    ranges = [int(r.split("=")[1].rstrip("-")) for m, _, r in repo.requests if m == "GET" and r]
    assert ranges and max(ranges) >= resumed_at  # the second run asked only for the rest of the file
    for name, data in repo.files.items():
        if not name.startswith("original/"):
            assert (target / name).read_bytes() == data, name
    assert not (target / "original").exists()
    assert link.is_symlink() and link.resolve() == target
    after = next(c for c in check_models(load_settings(config_dir, "none")) if c.name == "model AI_1")
    assert after.status == "PASS", after


def test_the_completeness_check_names_what_is_missing(tmp_path: Path):
    repo = _repo(tmp_path / "src")
    folder = tmp_path / "model"
    folder.mkdir()
    for name, data in repo.files.items():
        if name.endswith(("json",)):
            (folder / name).write_bytes(data)
    shard = "model-00001-of-00002.safetensors"
    (folder / shard).write_bytes(repo.files[shard][:-10])
    sizes = {n: len(d) for n, d in repo.files.items() if not n.startswith("original/")}
    result = check_complete(folder, sizes)
    assert not result.ok
    text = result.text()
    assert "1 of 2 shards missing (e.g. model-00002-of-00002.safetensors)" in text
    assert f"{shard} is {len(repo.files[shard]) - 10} bytes, the hub has {len(repo.files[shard])}" in text
    (folder / "tokenizer.json").unlink()
    assert "no tokenizer" in check_complete(folder).text()


def test_where_a_download_goes(tmp_path: Path, config_dir: Path, routing_writer):
    link, target = _linked_empty_folder(tmp_path)
    (tmp_path / "dangling").symlink_to(tmp_path / "not-yet" / "Swallow")
    routing_writer({"AI_1": {"kind": "vllm", "base_url": "http://127.0.0.1:8000/v1", "model": "s",
                             "model_path": str(link), "hub_id": REPO, "launch": {"port": 8000}},
                    "AI_3": {"kind": "vllm", "base_url": "http://127.0.0.1:8001/v1", "model": "s",
                             "model_path": str(tmp_path / "dangling"), "hub_id": REPO, "launch": {"port": 8001}},
                    "AI_4": {"kind": "ollama", "base_url": "http://127.0.0.1:11434/v1", "model": "phi3:mini"}},
                   fallback=["AI_1"])
    settings = load_settings(config_dir, "none")
    assert download_target(settings, "AI_1").folder == target
    assert download_target(settings, "AI_3").folder == tmp_path / "not-yet" / "Swallow"  # where the link points
    with pytest.raises(Exception, match="ollama pull phi3:mini"):
        download_target(settings, "AI_4")
    shipped = download_target(load_settings(Path(__file__).resolve().parents[2] / "config", "gpu"), "AI_1")
    assert shipped.folder is None and shipped.repo_id == "tokyotech-llm/Llama-3.1-Swallow-8B-Instruct-v0.3"
