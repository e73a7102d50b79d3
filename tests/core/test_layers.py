"""The import graph keeps its layers: the contracts of pyproject.toml's [tool.importlinter], as .ci/run checks them.

A folder of ``assistant/`` imports only the folders below it (the stage contract and the events at the bottom,
the wiring, bench and command line on top), ``live2d_bridge`` stands on the bottom layers only, and no
backend imports another. A broken contract prints the import chain that breaks it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_contracts_are_kept() -> None:
    pytest.importorskip("importlinter", reason="import-linter comes with the test extra (pip install -e '.[test]')")
    lint_imports = Path(sys.executable).with_name("lint-imports")
    command = [str(lint_imports)] if lint_imports.exists() else [
        sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
    done = subprocess.run([*command, "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
