"""`saijin bench`: sample utterances through the real voice pipeline; latency per stage, p50/p95, per language.

The same work as another framework's benchmark is one command, e.g. Whisper tiny.en, Piper joe and an
OpenAI-compatible server: ``saijin bench --language en --asr-model offline:whisper-tiny.en --voice offline:joe-us
--llm-url http://127.0.0.1:8000/v1 --llm-model NAME``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from assistant.bench.pipeline import (
    STAGES,
    BenchOptions,
    BenchRun,
    TurnTimeline,
    is_english_only,
    median_turn,
    run_bench,
    summarize,
)
from assistant.config import load_settings
from assistant.errors import UsageError

HELP = "latency benchmark: N spoken turns through the whole pipeline, p50/p95 per stage and voice to voice"

STAGE_LABELS = {
    "end_of_speech": "end of speech (VAD decision)",
    "asr_wait": "ASR waiting (busy with a superseded speculation)",
    "asr": "ASR",
    "transcript": "end of speech -> transcript",
    "emotion": "emotion",
    "prompt": "prompt + memory",
    "llm_first_token": "LLM first token",
    "first_sentence": "LLM first sentence",
    "tts_first_audio": "TTS first audio",
    "playback_start": "playback start",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--turns", type=int, default=10, metavar="N", help="measured turns (default 10)")
    parser.add_argument("--warmup", type=int, default=None, metavar="N",
                        help="untimed turns first (default: each sample once)")
    parser.add_argument("--persona", metavar="ID", help="who answers (default: assistant.yaml's)")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON to FILE")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the median turn as a waterfall PNG")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds one turn may take (default 180)")
    parser.add_argument("--language", choices=("ja", "en", "both"), default=None,
                        help="which sample utterances are spoken (default both; en with an English-only ASR model)")
    parser.add_argument("--asr-model", metavar="NAME",
                        help="another Whisper model: a faster-whisper name, a folder, offline:whisper-tiny.en")
    parser.add_argument("--voice", action="append", default=[], metavar="[LANG=]VOICE",
                        help="speak with this voice (offline:joe-us, piper:NAME, kokoro:jf_alpha, vits:PATH); "
                             "LANG= for one language only; repeatable")
    parser.add_argument("--soak", type=int, default=None, metavar="N",
                        help="instead: N turns in one process; memory, threads, tasks and open files must stay flat")
    parser.add_argument("--asr-window", action="store_true",
                        help="instead: Whisper's encoder window fitted to each utterance against the full 30 s "
                             "window, CER and time over 24 Japanese and English utterances")


def _ms(figures: dict[str, float] | None, key: str, digits: int = 0) -> str:
    return "-" if figures is None else f"{figures[key]:.{digits}f}"


def _columns(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(heading, figures) per language measured, "all" last."""
    languages = summary["languages"]
    return [(name if name != "both" else "all", languages[name]) for name in ("ja", "en", "both") if name in languages]


def print_report(summary: dict[str, Any]) -> None:
    """The figures as tables on the terminal: p50 per language and over all, p95 over all."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # a pipe or a file: wide enough that no label wraps
        console = Console(width=140)
    machine = summary["machine"]
    models = machine["models"]
    llm = models["llm"]
    load = machine.get("load_average", {}).get("before")
    console.print(f"[bold]saijin bench[/] — {summary['turns']} turns, profile {machine['profile']}, "
                  f"{machine['cpu_count']} × {machine['cpu']}" + (f", load {load[0]:.2f}" if load else ""))
    console.print(f"ASR {models['asr']}; emotion {models['emotion']}; LLM {llm.get('engine')} "
                  f"({llm.get('kind')}, {llm.get('model')}); TTS {', '.join(f'{k}: {v}' for k, v in models['tts'].items())}; "
                  f"threads {machine.get('threads')}")
    if machine.get("ready_s") is not None:
        console.print(f"ready {machine['ready_s']:.1f} s after start (models loaded, the persona's prompt read)")
    columns = _columns(summary)
    table = Table(title="latency (ms)")
    table.add_column("stage")
    for heading, group in columns:
        table.add_column(f"{heading} p50 ({group['turns']})", justify="right")
    table.add_column("all p95", justify="right")
    for name in STAGES:
        cells = [_ms(group["stages_ms"].get(name), "p50") for _heading, group in columns]
        table.add_row(STAGE_LABELS[name], *cells, _ms(summary["stages_ms"].get(name), "p95"))
    table.add_section()
    table.add_row("[bold]voice to voice[/]", *[_ms(g["voice_to_voice_ms"], "p50") for _h, g in columns],
                  _ms(summary["voice_to_voice_ms"], "p95"))
    table.add_row("  first turn after start", *[_first(g) for _h, g in columns], "")
    table.add_row("pipeline overhead (goal < 5)", *[_ms(g["overhead_ms"], "p50", 1) for _h, g in columns],
                  _ms(summary["overhead_ms"], "p95", 1))
    table.add_row("first audio / whole reply, 2+ sentences (goal ≤ 0.3)",
                  *[_ratio(g) for _h, g in columns], _ms(summary["first_audio_ratio"], "p95", 2))
    console.print(table)
    turns = Table(title="turns")
    for column in ("turn", "lang", "heard", "sentences", "voice to voice", "overhead", "ratio"):
        turns.add_column(column, justify="right" if column not in ("heard", "lang") else "left")
    for turn in summary["per_turn"]:
        ratio = turn["first_audio_ratio"]
        turns.add_row(str(turn["turn_id"]), turn["language"], turn["heard"][:40], str(turn["sentences"]),
                      f"{turn['voice_to_voice_ms']:.0f}", f"{turn['overhead_ms']:.1f}",
                      "-" if ratio is None else f"{ratio:.2f}")
    console.print(turns)
    for skipped in summary["skipped_turns"]:
        console.print(f"[yellow]turn {skipped['turn_id']} not measured ({skipped['outcome']}): "
                      f"{skipped['heard'] or '(nothing heard)'}[/]")


def _first(group: dict[str, Any]) -> str:
    """The first turn after start, and how it compares with the median (goal: within 1.2x)."""
    first, median = group["first_turn_ms"], group["voice_to_voice_ms"]
    if first is None:
        return "-"
    return f"{first:.0f} ({first / median['p50']:.2f}x)" if median and median["p50"] > 0 else f"{first:.0f}"


def _ratio(group: dict[str, Any]) -> str:
    ratio = group["first_audio_ratio"]
    return "-" if ratio is None else f"{ratio['p50']:.2f} ({group['multi_sentence_turns']})"


def _voices(values: list[str]) -> dict[str, str]:
    """``--voice [LANG=]VOICE`` values -> {language or "": voice}."""
    voices: dict[str, str] = {}
    for value in values:
        language, sep, voice = value.partition("=")
        if sep and language in ("ja", "en") and voice:
            voices[language] = voice
        elif sep and not (":" in language or "/" in language):
            raise UsageError(f"--voice {value}: write LANG=VOICE with LANG ja or en, or just VOICE")
        else:
            voices[""] = value
    return voices


def plot_languages(bench: BenchRun, summary: dict[str, Any], path: Path) -> list[Path]:
    """The median turn's waterfall at ``path``, and one per language beside it (NAME-ja.png, NAME-en.png)."""
    from assistant.bench.plot import plot_waterfall

    written = []
    middle = median_turn(bench.timelines)
    if middle is not None:
        written.append(plot_waterfall(middle.to_dict(), path))
    languages = [name for name in ("ja", "en") if name in summary["languages"]]
    if len(languages) > 1:
        for language in languages:
            turn = median_turn([t for t in bench.timelines if t.language == language])
            if turn is not None:
                target = path.with_name(f"{path.stem}-{language}{path.suffix or '.png'}")
                written.append(plot_waterfall(turn.to_dict(), target, title=_plot_title(turn, language)))
    return written


def _plot_title(turn: TurnTimeline, language: str) -> str:
    name = {"ja": "Japanese", "en": "English"}[language]
    return f"median {name} turn (voice to voice {turn.voice_to_voice_ms:.0f} ms)"


def _progress(index: int, total: int, timeline: TurnTimeline | None) -> None:
    if index < 0:
        print(f"warm-up turn {-index}/{total} (not timed)", file=sys.stderr, flush=True)
        return
    result = f"{timeline.voice_to_voice_ms:.0f} ms voice to voice" if timeline is not None else "not measured"
    print(f"turn {index}/{total}: {result}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace) -> int:
    if args.turns < 1:
        raise UsageError(f"--turns {args.turns}: give at least 1")
    if args.warmup is not None and args.warmup < 0:
        raise UsageError(f"--warmup {args.warmup}: give 0 or more")
    if args.llm_model and not args.llm_url:
        raise UsageError("--llm-model needs --llm-url (the server to ask)")
    language = args.language or ("en" if args.asr_model and is_english_only(args.asr_model) else "both")
    settings = load_settings(args.config, args.profile)
    if args.soak is not None or args.asr_window:
        if args.plot:
            raise UsageError("--plot draws a latency run; it does not go with --soak or --asr-window")
        return await _other_bench(args, settings)
    options = BenchOptions(turns=args.turns, warmup=args.warmup, persona=args.persona, llm_url=args.llm_url,
                           llm_model=args.llm_model, events_path=Path(args.events) if args.events else None,
                           turn_timeout_s=args.timeout, language=language, asr_model=args.asr_model,
                           voices=_voices(args.voice))
    bench = await run_bench(settings, options, progress=_progress)
    summary = summarize(bench)
    print_report(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.plot and not plot_languages(bench, summary, Path(args.plot)):
        print("saijin: no turn was measured, so there is nothing to plot", file=sys.stderr)
        return 1
    return 0 if bench.timelines else 1


async def _other_bench(args: argparse.Namespace, settings: Any) -> int:
    """`--soak N` (flatness over a long run) or `--asr-window` (fitted against full encoder window)."""
    json_path = Path(args.json) if args.json else None
    if args.soak is not None:
        from assistant.bench.soak import soak_command

        return await soak_command(settings, args.soak, warmup=args.warmup, json_path=json_path,
                                  timeout_s=args.timeout)
    import asyncio

    from assistant.bench.asr_window import run_asr_window_bench, to_markdown

    results = await asyncio.to_thread(run_asr_window_bench)
    print(to_markdown(results))
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0
