"""CPU thread budgets per pipeline stage, sized to the machine, and the knobs that apply them.

On a small CPU the stages overlap: Kokoro or Piper synthesises sentence 1 while the LLM writes sentence 2,
emotion tagging runs beside speech recognition. Every native library (llama.cpp, CTranslate2, onnxruntime,
torch) would otherwise start one thread per core and spin-wait on them, so two stages starve each other.
`cpu_threads(stage)` gives each stage its share; `onnx_session_options` and `configure_torch` apply it.

Override any budget with an environment variable: ``SAIJIN_THREADS_ASR=2`` (also ``_LLM``, ``_TTS``,
``_EMOTION``); ``SAIJIN_CPUS=4`` pretends the machine has that many usable cores (for testing budgets);
``SAIJIN_THREADS=library`` turns budgets off (each library's own default: a thread per core, spinning pools),
for comparison in benchmarks.

Budgets share the cores while stages overlap; `CORES` decides who has them when the user is waiting: work
on the critical path (a transcription, a reply's first spoken clause) holds `CORES.urgent()`, and the
embedded LLM writing ahead waits at its next token (`CORES.wait_while_urgent()`) until that work is done.
On two cores this halves Kokoro's first clause (measured in docs/benchmarks.md). ``SAIJIN_CORE_PRIORITY=off``
turns it off; it is off by itself on more than four cores, where the stages have cores of their own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

STAGES = ("asr", "llm", "tts", "emotion")
_ENV_PREFIX = "SAIJIN_THREADS_"


def available_cpus() -> int:
    """Cores this process may run on (its affinity mask, so containers and `taskset` are respected)."""
    forced = _env_int("SAIJIN_CPUS")
    if forced:
        return forced
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def budgets_enabled() -> bool:
    """False when ``SAIJIN_THREADS=library``: every library keeps its own default thread setup."""
    return os.environ.get("SAIJIN_THREADS", "").strip().lower() != "library"


def cpu_threads(stage: str) -> int:
    """Threads the given stage ("asr", "llm", "tts" or "emotion") may use on this machine.

    - asr: all cores (one Whisper decode at a time; the user is waiting on nothing else then);
    - llm: all cores on 1-2 cores (token speed is the critical path), else all but the TTS share;
    - tts: every core on 1-2 cores (its first clause is on the critical path), one thread on 3-4 cores, then
      a quarter of them (at most 4): it overlaps the LLM;
    - emotion: one thread (tiny models, runs beside ASR).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} — use one of {', '.join(STAGES)}")
    if not budgets_enabled():
        return available_cpus()
    override = _env_int(_ENV_PREFIX + stage.upper())
    if override:
        return override
    return _budget(stage, available_cpus())


def budgets() -> dict[str, int | str]:
    """Every stage's budget (for logs, `saijin doctor` and the bench's machine line)."""
    if not budgets_enabled():
        return {"budgets": "off (SAIJIN_THREADS=library)"}
    return {stage: cpu_threads(stage) for stage in STAGES}


def _budget(stage: str, cores: int) -> int:
    # Two TTS threads on two cores: the first clause runs with the LLM paused (CORES), and beside the LLM
    # two non-spinning threads still finish a clause sooner than one (2.1 s against 2.7 s, measured).
    tts = cores if cores <= 2 else 1 if cores <= 4 else min(4, cores // 4)
    if stage == "asr":
        return min(cores, 8)
    if stage == "llm":  # llama.cpp gains little past 16 threads
        return cores if cores <= 2 else min(16, max(1, cores - tts))
    if stage == "tts":
        return tts
    return 1


def _env_int(name: str) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        log.warning("%s=%r is not a whole number of threads; ignored", name, raw)
        return 0
    return max(0, value)


def prefer_passive_waiting() -> None:
    """Ask OpenMP runtimes (torch, CTranslate2) to sleep rather than spin when idle.

    Takes effect only for runtimes loaded after the call; an explicit OMP_WAIT_POLICY is kept.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def onnx_session_options(stage: str, ort: Any | None = None) -> Any:
    """onnxruntime SessionOptions for `stage`: its thread budget, sequential, no spin-waiting pools."""
    if ort is None:
        import onnxruntime

        ort = onnxruntime
    options = ort.SessionOptions()
    if not budgets_enabled():
        return options
    options.intra_op_num_threads = cpu_threads(stage)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def configure_torch(stage: str) -> int:
    """Set torch's intra-op threads to `stage`'s budget (process-wide) and inter-op to 1 when still allowed.

    Returns the thread count set. torch keeps one setting per process: the last stage to call wins, so
    callers call this right before they load or run their model.
    """
    import torch

    if not budgets_enabled():
        return int(torch.get_num_threads())
    threads = cpu_threads(stage)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    try:
        if torch.get_num_interop_threads() != 1:
            torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first inter-op work; harmless afterwards
        pass
    return threads


def thread_count() -> int:
    """Threads this process runs right now (Linux /proc/self/task; 0 where that is not available)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


class CorePriority:
    """Who has the cores while the user waits: urgent work (held with `urgent`) makes background work
    (which calls `wait_while_urgent` at its safe points, e.g. between two LLM tokens) pause until it ends.

    Background work waits at most `max_wait_s` per call, so a stuck holder cannot stall a reply for good.
    """

    def __init__(self, enabled: bool | None = None, max_wait_s: float = 5.0) -> None:
        self._enabled = enabled
        self.max_wait_s = max_wait_s
        self._holders = 0
        self._changed = threading.Condition()

    @property
    def enabled(self) -> bool:
        if self._enabled is not None:
            return self._enabled
        setting = os.environ.get("SAIJIN_CORE_PRIORITY", "").strip().lower()
        if setting in ("off", "0", "false", "no"):
            return False
        return budgets_enabled() and (setting in ("on", "1", "true", "yes") or available_cpus() <= 4)

    @property
    def is_urgent(self) -> bool:
        return self._holders > 0

    @contextmanager
    def urgent(self) -> Iterator[None]:
        """Hold the cores for the work inside the block (nestable, any thread)."""
        if not self.enabled:
            yield
            return
        with self._changed:
            self._holders += 1
        try:
            yield
        finally:
            with self._changed:
                self._holders -= 1
                if self._holders == 0:
                    self._changed.notify_all()

    def wait_while_urgent(self, is_cancelled: Callable[[], bool] | None = None) -> float:
        """Block while urgent work runs — at most `max_wait_s`, and no longer once `is_cancelled()` (asked
        every 50 ms); the seconds waited."""
        if self._holders == 0:
            return 0.0
        started = time.monotonic()
        deadline = started + self.max_wait_s
        with self._changed:
            while self._holders and not (is_cancelled is not None and is_cancelled()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(0.05, left))
        return time.monotonic() - started


#: The process's cores are one resource: one arbiter for every stage that runs on them.
CORES = CorePriority()
