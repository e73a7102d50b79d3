"""Loading the embedded model leaves the user's screen alone: what other threads print meanwhile arrives in
full (llama-cpp-python, loading quietly, used to point the process's stdout and stderr at /dev/null for the
load, and a turn line printed then was lost), and llama.cpp's own chatter stays off it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
import sys, threading, time
from assistant.config.schema import EngineConfig
from assistant.llm.embedded import EmbeddedEngine

engine = EmbeddedEngine("AI_2", EngineConfig(kind="embedded", model="offline:gemma3-270m", n_ctx=512))
loaded = threading.Event()
threading.Thread(target=lambda: (engine.load(), loaded.set())).start()
count = 0
while not loaded.is_set() or count < 20:
    print(f"line {count}", flush=True)
    print(f"note {count}", file=sys.stderr, flush=True)
    count += 1
    time.sleep(0.001)
print(f"printed {count}", flush=True)
"""


def test_lines_printed_while_the_model_loads_all_reach_the_screen() -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is built by .ci/setup")
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    count = int(lines[-1].split()[1])
    assert lines[:-1] == [f"line {i}" for i in range(count)], proc.stdout[-2000:]
    assert proc.stderr.splitlines() == [f"note {i}" for i in range(count)], proc.stderr[-2000:]
