"""Fixtures of the reply stage's parts: the shipped settings and their personas (miyu, yuuri)."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.config import load_settings
from assistant.config.loader import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The shipped config/ (rules, personas, bedtime phrases)."""
    return load_settings(ROOT / "config", "cpu")
