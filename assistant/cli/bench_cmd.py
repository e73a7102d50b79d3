"""`saijin bench`: sample utterances through the real voice pipeline; latency per stage, p50/p95."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from assistant.bench.pipeline import STAGES, BenchOptions, TurnTimeline, median_turn, run_bench, summarize
from assistant.config import load_settings
from assistant.errors import UsageError

HELP = "latency benchmark: N spoken turns through the whole pipeline, p50/p95 per stage and voice to voice"

STAGE_LABELS = {
    "end_of_speech": "end of speech (VAD decision)",
    "asr_wait": "ASR waiting (busy with a superseded speculation)",
    "asr": "ASR",
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


def _ms(figures: dict[str, float] | None, key: str, digits: int = 0) -> str:
    return "-" if figures is None else f"{figures[key]:.{digits}f}"


def print_report(summary: dict[str, Any]) -> None:
    """The figures as tables on the terminal."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    machine = summary["machine"]
    models = machine["models"]
    llm = models["llm"]
    console.print(f"[bold]saijin bench[/] — {summary['turns']} turns, profile {machine['profile']}, "
                  f"{machine['cpu_count']} × {machine['cpu']}")
    console.print(f"ASR {models['asr']}; emotion {models['emotion']}; LLM {llm.get('engine')} "
                  f"({llm.get('kind')}, {llm.get('model')}); TTS {', '.join(f'{k}: {v}' for k, v in models['tts'].items())}")
    table = Table(title="latency (ms)")
    table.add_column("stage")
    table.add_column("p50", justify="right")
    table.add_column("p95", justify="right")
    for name in STAGES:
        figures = summary["stages_ms"].get(name)
        label = STAGE_LABELS[name]
        if figures is not None and figures["turns"] < summary["turns"]:
            label += f" ({figures['turns']} of {summary['turns']} turns)"
        table.add_row(label, _ms(figures, "p50"), _ms(figures, "p95"))
    table.add_section()
    table.add_row("[bold]voice to voice[/]", _ms(summary["voice_to_voice_ms"], "p50"),
                  _ms(summary["voice_to_voice_ms"], "p95"))
    table.add_row("pipeline overhead (goal < 5)", _ms(summary["overhead_ms"], "p50", 1),
                  _ms(summary["overhead_ms"], "p95", 1))
    table.add_row("first audio / whole reply (goal ≤ 0.3)", _ms(summary["first_audio_ratio"], "p50", 2),
                  _ms(summary["first_audio_ratio"], "p95", 2))
    if summary["multi_sentence_turns"]:
        table.add_row(f"  … replies of 2+ sentences ({summary['multi_sentence_turns']})",
                      _ms(summary["first_audio_ratio_multi_sentence"], "p50", 2),
                      _ms(summary["first_audio_ratio_multi_sentence"], "p95", 2))
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
    settings = load_settings(args.config, args.profile)
    options = BenchOptions(turns=args.turns, warmup=args.warmup, persona=args.persona, llm_url=args.llm_url,
                           llm_model=args.llm_model, events_path=Path(args.events) if args.events else None,
                           turn_timeout_s=args.timeout)
    bench = await run_bench(settings, options, progress=_progress)
    summary = summarize(bench)
    print_report(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.plot:
        middle = median_turn(bench.timelines)
        if middle is None:
            print("saijin: no turn was measured, so there is nothing to plot", file=sys.stderr)
            return 1
        from assistant.bench.plot import plot_waterfall

        plot_waterfall(middle.to_dict(), Path(args.plot))
    return 0 if bench.timelines else 1
