"""The soak: many turns in one process through the real pipeline; memory, tasks, threads and open files stay flat.

Typed turns (mostly English, some Japanese) go through ``Conversation.say`` and every ``voice_every``-th turn
is spoken (a sample WAV through VAD, Whisper and emotion); every reply is spoken by the real voices to a
NullSink that does not wait for the audio clock. After the warm-up turns (model loads, caches, thread pools,
the first summaries) a baseline is taken; after the last turn the same figures are taken again and
:func:`flatness_problems` says what grew.

Memory is judged twice. Raw RSS (what the user sees) must not grow by more than ``max_rss_growth`` of the
baseline. And the native memory *in use* — what glibc's ``mallinfo2()`` counts as allocated (heap chunks in
use in every arena plus mmapped chunks: numpy buffers, ONNX Runtime, CTranslate2, llama.cpp, SQLite) — is
sampled after every measured turn; the slope of a least-squares line through those samples is the leak
rate, and must stay under ``max_in_use_mb_per_turn`` in a long run (``judge_in_use_after`` measured turns:
until the conversation fills the model's context, the embedded engine's saved prompt states grow with it). Unlike RSS it does not move with glibc keeping or
fragmenting freed heap (RSS after ``malloc_trim(0)`` was tried: it climbs as the heap fragments while raw RSS
stays flat), so a short run sees a steady leak. Python objects are counted too (a diagnostic).

Run it long with ``python -m assistant.bench.soak --turns 300 --json soak.json`` (the CI test runs a short one).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import gc
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.config.loader import Settings

#: What the typed turns say.
ENGLISH = ("How was your day?", "Tell me about the rain.", "I made some tea.", "Do you like old books?",
           "It is cold tonight.", "I went for a walk.", "What should I cook?", "I saw a cat today.")
JAPANESE = ("今日は雨だったね。", "紅茶をいれたよ。", "ちょっと眠いな。")


@dataclass
class SoakOptions:
    """How a soak runs."""

    turns: int = 300
    #: Turns before the baseline; None: :func:`warmup_turns`.
    warmup: int | None = None
    #: Short replies keep hundreds of turns affordable on two cores (the embedded model writes ~35 tokens/s).
    max_tokens: int = 12
    #: Every this many turns one is spoken (from turn ``voice_every // 2``), one is Japanese text (from turn 0).
    voice_every: int = 20
    turn_timeout_s: float = 180.0
    samples_cache: Path | None = None
    #: Keep the memory database in a temporary folder (False: the configured one, e.g. a test's tmp config).
    isolate_data: bool = True
    #: Limits for :func:`flatness_problems`.
    max_rss_growth: float = 0.10
    max_in_use_mb_per_turn: float = 0.25
    #: The in-use slope is judged only over at least this many measured turns: before the conversation's
    #: context is full, the embedded engine's saved prompt states (up to 3, each as long as the conversation)
    #: grow ~1-2 MB a turn by design, bounded by n_ctx. Shorter runs report the slope without judging it.
    judge_in_use_after: int = 200
    #: Turns that went wrong (no reply, an error) allowed per 50 turns.
    failures_per_50: int = 1


def warmup_turns(turns: int) -> int:
    """Turns before the baseline: a sixth of the run, at least 10, at most 40 (and fewer than ``turns``)."""
    return min(max(10, min(40, turns // 6)), turns - 1)


def turn_kind(index: int, voice_every: int = 20) -> str:
    """``voice`` every ``voice_every``-th turn (from the middle of the first block), ``ja`` every
    ``voice_every``-th (from the first), else ``en`` (Kokoro, the Japanese voice, is the slow one on a CPU)."""
    if index % voice_every == voice_every // 2:
        return "voice"
    return "ja" if index % voice_every == 0 else "en"


# ------------------------------------------------------------------------------------------------
# What the process holds
# ------------------------------------------------------------------------------------------------


def thread_kinds() -> collections.Counter[str]:
    """Threads by kind (the name without its number): a leak shows as a kind that keeps growing."""
    return collections.Counter(re.sub(r"[_-]?\d+$", "", t.name) or t.name for t in threading.enumerate())


def task_kinds() -> collections.Counter[str]:
    """Running asyncio tasks by name, digits folded (``turn:12`` and ``turn:13`` are one kind)."""
    return collections.Counter(re.sub(r"\d+", "N", t.get_name()) for t in asyncio.all_tasks())


def rss_mb() -> float:
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def in_use_mb() -> float | None:
    """Native memory allocated through malloc and still in use, all arenas (None without glibc 2.33+)."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return round((info.uordblks + info.hblkhd) / 2**20, 2)


def trimmed_rss_mb() -> float | None:
    """RSS right after glibc hands its freed heap back to the system (None without glibc)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return None
    return rss_mb()


@dataclass
class Snapshot:
    """What the process holds at one moment."""

    rss_mb: float
    in_use_mb: float | None
    trimmed_rss_mb: float | None
    threads: collections.Counter[str]
    tasks: collections.Counter[str]
    fds: int
    files: list[str]
    python_objects: int

    @classmethod
    def take(cls) -> Snapshot:
        import psutil

        process = psutil.Process()
        raw = rss_mb()  # before the trim: the figure a user would see
        return cls(rss_mb=raw, in_use_mb=in_use_mb(), trimmed_rss_mb=trimmed_rss_mb(), threads=thread_kinds(),
                   tasks=task_kinds(),
                   fds=process.num_fds(), files=sorted(f.path for f in process.open_files()),
                   python_objects=len(gc.get_objects()))


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """The least-squares slope of ``(x, y)`` points (None with fewer than three)."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else None


# ------------------------------------------------------------------------------------------------
# Running it
# ------------------------------------------------------------------------------------------------


@dataclass
class SoakReport:
    """Everything one soak measured."""

    options: SoakOptions
    warmup: int
    baseline: Snapshot
    final: Snapshot
    kinds: dict[str, int]
    seconds: dict[str, float]
    wall_s: float
    measured_s: float
    #: (turn number, native memory in use in MB) after every measured turn.
    in_use: list[tuple[int, float]] = field(default_factory=list)
    #: (turn number, raw RSS in MB) every 25 turns and at the baseline.
    checkpoints: list[tuple[int, float]] = field(default_factory=list)
    #: (turn number, Python objects) every 10 measured turns.
    objects: list[tuple[int, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    load_average: dict[str, list[float]] = field(default_factory=dict)

    @property
    def rss_growth(self) -> float:
        return (self.final.rss_mb - self.baseline.rss_mb) / self.baseline.rss_mb

    @property
    def in_use_mb_per_turn(self) -> float | None:
        return slope(self.in_use)

    def to_dict(self) -> dict[str, Any]:
        per_turn = self.in_use_mb_per_turn
        return {
            "turns": self.options.turns, "kinds": self.kinds, "warmup_turns": self.warmup,
            "max_tokens": self.options.max_tokens, "wall_s": round(self.wall_s, 1),
            "measured_s": round(self.measured_s, 1),
            "s_per_turn": {kind: round(self.seconds[kind] / self.kinds[kind], 2) for kind in self.kinds},
            "rss_mb": {"after_warmup": self.baseline.rss_mb, "end": self.final.rss_mb,
                       "growth": round(self.rss_growth, 4)},
            "in_use_mb": {"after_warmup": self.baseline.in_use_mb, "end": self.final.in_use_mb,
                          "mb_per_turn": None if per_turn is None else round(per_turn, 4), "samples": self.in_use},
            "rss_after_malloc_trim_mb": {"after_warmup": self.baseline.trimmed_rss_mb,
                                         "end": self.final.trimmed_rss_mb},
            "python_objects": {"after_warmup": self.baseline.python_objects, "end": self.final.python_objects,
                               "samples": self.objects},
            "rss_checkpoints_mb": self.checkpoints,
            "threads": {"after_warmup": dict(self.baseline.threads), "end": dict(self.final.threads)},
            "tasks": {"after_warmup": dict(self.baseline.tasks), "end": dict(self.final.tasks)},
            "fds": {"after_warmup": self.baseline.fds, "end": self.final.fds},
            "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "load_average": self.load_average,
            "problems": self.problems[:20],
        }


async def settle(conversation: Any, timeout_s: float = 120.0) -> None:
    """Wait until nothing is in flight: the pipeline idle and no background summary running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        await conversation.pipeline.wait_idle()
        if not any(t.get_name().startswith("summary:") for t in asyncio.all_tasks()):
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.3)
    gc.collect()


async def _one_turn(conversation: Any, recorder: Any, samples: Sequence[Any], index: int, kind: str,
                    timeout_s: float) -> str | None:
    """Run turn ``index``; a line saying what went wrong, or None."""
    from assistant.bench.pipeline import play_turn

    if kind == "voice":
        sample = samples[index % len(samples)]
        opened = await play_turn(conversation, recorder, sample, timeout=timeout_s)
        recorder.forget_ended()
        if not any(t.outcome == "done" and t.heard for t in opened):
            return f"turn {index}: voice turn not answered: {[(t.outcome, t.heard) for t in opened]}"
        return None
    lines = JAPANESE if kind == "ja" else ENGLISH
    result = await conversation.say(lines[index % len(lines)], timeout=timeout_s)
    if result.errors or not result.sentences:
        return f"turn {index}: {kind} turn: errors {result.errors}, reply {result.reply!r}"
    return None


def _short_replies(settings: Settings, max_tokens: int) -> None:
    for engine in settings.routing.engines.values():
        engine.generation.max_tokens = max_tokens


async def run_soak(settings: Settings, options: SoakOptions,
                   progress: Callable[[int, int, str, float], None] | None = None) -> SoakReport:
    """Run ``options.turns`` turns through the real pipeline and measure what the process holds."""
    from assistant.bench.pipeline import TimelineRecorder, bench_conversation, isolated
    from assistant.bench.samples import sample_utterances
    from assistant.pipeline.assemble import Options

    if options.turns < 2:
        raise ValueError("a soak needs at least 2 turns (a warm-up and a measured one)")
    warmup = warmup_turns(options.turns) if options.warmup is None else options.warmup
    if not 0 < warmup < options.turns:
        raise ValueError(f"warm-up {warmup}: give 1 .. {options.turns - 1}")
    _short_replies(settings, options.max_tokens)
    samples = await asyncio.to_thread(sample_utterances, options.samples_cache)
    with tempfile.TemporaryDirectory(prefix="saijin-soak-") as folder:
        if options.isolate_data:
            settings = isolated(settings, Path(folder))
        conversation = bench_conversation(settings, Options(input="feed", output="file", is_realtime=False,
                                                           use_memory=True))
        recorder = TimelineRecorder()
        conversation.bus.subscribe(recorder)
        return await _drive(conversation, recorder, samples, options, warmup, progress)


async def _drive(conversation: Any, recorder: Any, samples: Sequence[Any], options: SoakOptions, warmup: int,
                 progress: Callable[[int, int, str, float], None] | None) -> SoakReport:
    kinds: collections.Counter[str] = collections.Counter()
    seconds: dict[str, float] = collections.defaultdict(float)
    problems: list[str] = []
    in_use: list[tuple[int, float]] = []
    checkpoints: list[tuple[int, float]] = []
    objects: list[tuple[int, int]] = []
    started = warm_at = time.monotonic()
    baseline: Snapshot | None = None
    load_before = list(os.getloadavg())
    async with conversation:
        for index in range(options.turns):
            kind = turn_kind(index, options.voice_every)
            turn_started = time.monotonic()
            problem = await _one_turn(conversation, recorder, samples, index, kind, options.turn_timeout_s)
            if problem:
                problems.append(problem)
            kinds[kind] += 1
            seconds[kind] += time.monotonic() - turn_started
            done = index + 1
            if progress is not None:
                progress(done, options.turns, kind, time.monotonic() - turn_started)
            if done == warmup:
                await settle(conversation)
                baseline = Snapshot.take()
                warm_at = time.monotonic()
                checkpoints.append((done, baseline.rss_mb))
                objects.append((done, baseline.python_objects))
                if baseline.in_use_mb is not None:
                    in_use.append((done, baseline.in_use_mb))
            elif done > warmup:
                if (value := in_use_mb()) is not None:
                    in_use.append((done, value))
                if (done - warmup) % 10 == 0:
                    objects.append((done, len(gc.get_objects())))
            if done % 25 == 0:
                checkpoints.append((done, rss_mb()))
        await settle(conversation)
        final = Snapshot.take()
        ended = time.monotonic()
    assert baseline is not None
    return SoakReport(options=options, warmup=warmup, baseline=baseline, final=final, kinds=dict(kinds),
                      seconds=dict(seconds), wall_s=ended - started, measured_s=ended - warm_at, in_use=in_use,
                      checkpoints=checkpoints, objects=objects, problems=problems,
                      load_average={"before": [round(x, 2) for x in load_before],
                                    "after": [round(x, 2) for x in os.getloadavg()]})


# ------------------------------------------------------------------------------------------------
# The verdict
# ------------------------------------------------------------------------------------------------


def flatness_problems(report: SoakReport) -> list[str]:
    """What grew or went wrong, one line each; empty when the run stayed flat."""
    options = report.options
    found: list[str] = []
    allowed = max(1, options.turns * options.failures_per_50 // 50)
    if len(report.problems) > allowed:
        found.append(f"{len(report.problems)} of {options.turns} turns went wrong: {report.problems[:5]}")
    if report.rss_growth >= options.max_rss_growth:
        found.append(f"resident memory grew {report.rss_growth:.1%} after warm-up: {report.checkpoints}")
    per_turn = report.in_use_mb_per_turn
    measured = options.turns - report.warmup
    if measured >= options.judge_in_use_after and per_turn is not None and per_turn >= options.max_in_use_mb_per_turn:
        found.append(f"native memory in use grows {per_turn:.3f} MB per turn (limit {options.max_in_use_mb_per_turn}):"
                     f" {report.in_use[::5]}")
    found += _thread_problems(report.baseline, report.final)
    extra_tasks = report.final.tasks - report.baseline.tasks
    if extra_tasks:
        found.append(f"asyncio tasks leaked: {dict(extra_tasks)} more than after warm-up ({dict(report.baseline.tasks)})")
    if report.final.fds > report.baseline.fds:
        found.append(f"open files leaked: {report.baseline.fds} -> {report.final.fds} descriptors; files "
                     f"{report.baseline.files} -> {report.final.files}")
    return found


def _thread_problems(baseline: Snapshot, final: Snapshot) -> list[str]:
    # The default executor (asyncio_N) may still grow up to its fixed maximum; nothing else may grow.
    executor_max = min(32, (os.cpu_count() or 1) + 4)
    found = []
    for kind, count in final.threads.items():
        limit = max(baseline.threads.get(kind, 0), executor_max if kind == "asyncio" else 0)
        if count > limit:
            found.append(f"threads {kind!r}: {baseline.threads.get(kind, 0)} after warm-up, {count} at the end")
    return found


def _cpu_model() -> str:
    from assistant.bench.pipeline import _cpu_model as cpu_model

    return cpu_model()


# ------------------------------------------------------------------------------------------------
# Command line: python -m assistant.bench.soak
# ------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--turns", type=int, default=300, metavar="N", help="turns in the soak (default 300)")
    parser.add_argument("--warmup", type=int, default=None, metavar="N",
                        help="turns before the baseline (default: a sixth of the turns, 10 to 40)")
    parser.add_argument("--max-tokens", type=int, default=12, metavar="N", help="reply length (default 12 tokens)")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON to FILE")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds one turn may take (default 180)")


def _progress(done: int, total: int, kind: str, seconds: float) -> None:
    if done % 10 == 0 or done == total:
        print(f"soak turn {done}/{total} ({kind}, {seconds:.1f} s)", file=sys.stderr, flush=True)


async def soak_command(settings: Settings, turns: int, *, warmup: int | None = None, max_tokens: int = 12,
                       json_path: Path | None = None, timeout_s: float = 180.0) -> int:
    """Run a soak of ``turns`` turns, print the verdict (and write the JSON); 0 when flat, 1 when something
    grew or too many turns failed. What `saijin bench --soak N` and ``python -m assistant.bench.soak`` run."""
    from assistant.errors import UsageError

    if turns < 2:
        raise UsageError(f"--turns {turns}: give at least 2 (a warm-up turn and a measured one)")
    if warmup is not None and not 0 < warmup < turns:
        raise UsageError(f"--warmup {warmup}: give 1 .. {turns - 1}")
    if max_tokens < 1:
        raise UsageError(f"--max-tokens {max_tokens}: give at least 1")
    options = SoakOptions(turns=turns, warmup=warmup, max_tokens=max_tokens, turn_timeout_s=timeout_s)
    report = await run_soak(settings, options, progress=_progress)
    figures = report.to_dict()
    problems = flatness_problems(report)
    figures["verdict"] = problems or "flat"
    if json_path is not None:
        json_path.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    _print_summary(figures, problems)
    return 1 if problems else 0


def _print_summary(figures: dict[str, Any], problems: list[str]) -> None:
    rss, in_use = figures["rss_mb"], figures["in_use_mb"]
    print(f"soak: {figures['turns']} turns ({figures['kinds']}) in {figures['wall_s']:.0f} s on "
          f"{figures['cpu_count']} × {figures['cpu']}, load {figures['load_average']}")
    print(f"  RSS {rss['after_warmup']} -> {rss['end']} MB ({rss['growth']:+.1%}); in use "
          f"{in_use['after_warmup']} -> {in_use['end']} MB, {in_use['mb_per_turn']} MB/turn")
    print(f"  threads {figures['threads']['end']}; tasks {figures['tasks']['end']}; fds "
          f"{figures['fds']['after_warmup']} -> {figures['fds']['end']}")
    for line in problems:
        print(f"saijin: soak: {line}", file=sys.stderr)
    if not problems:
        print("  flat: nothing grew after the warm-up")


def main(argv: list[str] | None = None) -> int:
    from assistant.config import load_settings
    from assistant.errors import SaijinError

    parser = argparse.ArgumentParser(prog="python -m assistant.bench.soak", description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.add_argument("--config", metavar="DIR", help="the configuration folder")
    parser.add_argument("--profile", default="cpu", metavar="NAME", help="the profile (default cpu)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config, args.profile)
        return asyncio.run(soak_command(settings, args.turns, warmup=args.warmup, max_tokens=args.max_tokens,
                                        json_path=Path(args.json) if args.json else None,
                                        timeout_s=args.timeout))
    except SaijinError as error:
        print(f"saijin: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
