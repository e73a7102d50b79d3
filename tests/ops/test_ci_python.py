"""`.ci/setup` on a machine whose only Python is 3.10 (Ubuntu 22.04's python3): it stops at once with one line
saying what to install — before it touches apt or a venv. Uses pyenv's 3.10 where the machine has one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY310 = [Path(p) for p in ("/root/.pyenv/versions/3.10.13/bin/python3.10",
                           os.path.expanduser("~/.pyenv/versions/3.10.13/bin/python3.10")) if Path(p).is_file()]


@pytest.mark.skipif(not PY310, reason="no Python 3.10 on this machine (pyenv 3.10.13)")
def test_setup_with_only_python_3_10_fails_in_one_clear_line(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(PY310[0])
    for tool in ("head", "dirname"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    for env in ({"PATH": str(bin_dir)}, {"PATH": str(bin_dir), "PYTHON": str(PY310[0])}):
        done = subprocess.run(["/bin/bash", str(ROOT / ".ci" / "setup")], env=env, capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)
        assert done.returncode == 1
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert "needs Python 3.11 or newer, found Python 3.10.13" in lines[0]
        assert "apt install -y python3.11 python3.11-venv" in lines[0] and "PYTHON=python3.11 bash .ci/setup" in lines[0]
