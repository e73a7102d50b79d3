"""Shared test set-up: each area keeps its fixtures in tests/fixtures/<area>.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Models assembled from packages go to one cache the tests own (reused across runs).
os.environ.setdefault("SAIJIN_CACHE", str(ROOT / ".cache" / "models"))
os.environ.setdefault("KOKORO_JA_CACHE", str(ROOT / ".cache" / "kokoro-ja"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest_plugins = [
    "tests.fixtures.core",
    "tests.fixtures.speech",
    "tests.fixtures.voices",
    "tests.fixtures.llm",
    "tests.fixtures.bridge",
    "tests.fixtures.ops",
    "tests.fixtures.vllm",
    "tests.fixtures.memory",
    "tests.fixtures.pulse",
]


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped config/ folder that a test may change."""
    import shutil

    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    return target
