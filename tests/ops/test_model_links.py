"""Model paths as symlink chains (the WSL2 layout /mnt/sai/models/... -> /mnt/f/...), with real links in tmp_path:
the broken link is named and the printed `ln -sfn` repairs it; an existing link to an empty folder is its own FAIL."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from assistant.config.loader import load_settings
from assistant.ops.doctor import check_models, inspect_model_path
from assistant.ops.links import walk_links
from tests.fixtures.ops import make_hf_model


def _seed_layout(root: Path) -> tuple[Path, Path]:
    """sai/models/Swallow/Swallow-9B -> f/saijinos/models/Swallow-9B -> f/saijinos/store/Swallow-9B (absent)."""
    (root / "sai" / "models" / "Swallow").mkdir(parents=True)
    (root / "f" / "saijinos" / "models").mkdir(parents=True)
    first = root / "sai" / "models" / "Swallow" / "Swallow-9B"
    second = root / "f" / "saijinos" / "models" / "Swallow-9B"
    first.symlink_to(second)
    second.symlink_to("../store/Swallow-9B")  # relative, as `ln -s` is often used
    return first, second


def test_a_chain_is_followed_link_by_link_and_the_broken_one_is_named(tmp_path: Path):
    first, second = _seed_layout(tmp_path)
    chain = walk_links(first)
    assert [h.link for h in chain.hops] == [first, second]
    assert chain.missing == tmp_path / "f" / "saijinos" / "store"  # the first part of the way that is absent
    status, detail, fix = inspect_model_path(first, "hf", "saijin models download AI_1")
    assert status == "FAIL"
    assert f"broken symlink {second} -> ../store/Swallow-9B" in detail and f"{first} -> {second} -> " in detail
    assert fix.startswith("repoint the link at the real model folder: ln -sfn /real/model/folder ")
    # The printed fix, with the real folder filled in, repairs the chain.
    real = make_hf_model(tmp_path / "real" / "Swallow-9B")
    command = shlex.split(fix.split(": ", 1)[1].split(" (")[0].replace("/real/model/folder", str(real)))
    subprocess.run(command, check=True)
    status, detail, _ = inspect_model_path(first, "hf")
    assert status == "PASS", detail
    assert f"{first} -> {second} -> {real}" in detail


def test_a_linked_parent_folder_counts_as_a_link(tmp_path: Path):
    make_hf_model(tmp_path / "f" / "models" / "swallow")
    (tmp_path / "sai").mkdir()
    (tmp_path / "sai" / "models").symlink_to(tmp_path / "f" / "models")
    chain = walk_links(tmp_path / "sai" / "models" / "swallow")
    assert [h.link for h in chain.hops] == [tmp_path / "sai" / "models"]
    assert chain.resolved == tmp_path / "f" / "models" / "swallow"
    assert inspect_model_path(tmp_path / "sai" / "models" / "swallow", "hf")[0] == "PASS"


def test_a_link_to_an_empty_folder_is_its_own_failure_with_its_own_fix(tmp_path: Path, config_dir: Path,
                                                                         routing_writer):
    first, _ = _seed_layout(tmp_path)
    (tmp_path / "f" / "saijinos" / "store" / "Swallow-9B").mkdir(parents=True)
    routing_writer({"AI_1": {"kind": "vllm", "base_url": "http://127.0.0.1:8000/v1", "model": "swallow",
                             "model_path": str(first), "launch": {"port": 8000}}})
    check = next(c for c in check_models(load_settings(config_dir, "none")) if c.name == "model AI_1")
    assert check.status == "FAIL"
    assert "the link exists but the target is an empty folder (no weights)" in check.detail
    assert check.fix.startswith(f"saijin models download AI_1 fills {tmp_path / 'f' / 'saijinos' / 'store' / 'Swallow-9B'}")
    assert f"ln -sfn /real/model/folder {first}" in check.fix
    # A folder that has a config but lost its shards names the same command.
    folder = make_hf_model(tmp_path / "f" / "saijinos" / "store" / "Swallow-9B", weights=False)
    (folder / "model.safetensors.index.json").write_text('{"weight_map": {"a": "model-00001-of-00002.safetensors"}}')
    status, detail, fix = inspect_model_path(first, "hf", "saijin models download AI_1")
    assert status == "FAIL" and "shard(s) missing" in detail and "saijin models download AI_1" in fix


def test_a_link_loop_is_reported(tmp_path: Path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    status, detail, _ = inspect_model_path(tmp_path / "a", "hf")
    assert status == "FAIL" and "symlink loop" in detail


def test_a_link_onto_an_unmounted_windows_drive_says_how_to_mount_it(tmp_path: Path, config_dir: Path,
                                                                      routing_writer):
    from assistant.errors import ConfigError
    from assistant.ops.model_download import download_target

    drive = next((d for d in "qxyzw" if not Path(f"/mnt/{d}").exists()), None)
    if drive is None:
        pytest.skip("every spare /mnt/<letter> exists here")
    link = tmp_path / "Swallow-9B"
    link.symlink_to(f"/mnt/{drive}/saijinos/models/Swallow-9B")
    status, detail, fix = inspect_model_path(link, "hf")
    assert status == "FAIL" and f"/mnt/{drive} does not exist" in detail
    assert f"sudo mount -t drvfs {drive.upper()}: /mnt/{drive}" in fix and f"ln -sfn /real/model/folder {link}" in fix
    routing_writer({"AI_1": {"kind": "vllm", "base_url": "http://127.0.0.1:8000/v1", "model": "s",
                             "model_path": str(link), "hub_id": "org/m", "launch": {"port": 8000}}})
    with pytest.raises(ConfigError, match="the Windows drive is not mounted"):
        download_target(load_settings(config_dir, "none"), "AI_1")
