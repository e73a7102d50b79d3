"""What several commands share: conversation options from arguments, error lines, a turn as printed lines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from assistant.config.loader import Settings
from assistant.pipeline.assemble import Options, TurnResult


def conversation_options(args: argparse.Namespace, settings: Settings) -> Options:
    """The options every conversation command shares (--persona, --mode, --llm-url/model, --events)."""
    return Options(
        persona=getattr(args, "persona", None),
        mode=getattr(args, "mode", None),
        llm_url=getattr(args, "llm_url", None),
        llm_model=getattr(args, "llm_model", None),
        events_path=Path(args.events) if getattr(args, "events", None) else None,
    )


def print_error(message: str) -> None:
    print(f"saijin: {message}", file=sys.stderr)


def print_turn(result: TurnResult, names: dict[str, str]) -> None:
    """One conversation turn as a few readable lines."""
    mood = f", {result.emotion}" if result.emotion else ""
    if result.heard:
        print(f"[turn {result.turn_id}] you{mood}: {result.heard}")
    if result.is_dropped:
        for error in result.errors:  # e.g. speech recognition failed: say why, not "nothing to answer"
            print(f"[turn {result.turn_id}] error: {error}")
        if not result.errors:
            print(f"[turn {result.turn_id}] (no reply: nothing to answer)")
        sys.stdout.flush()
        return
    if result.sentences:
        name = names.get(result.persona, result.persona)
        suffix = " (interrupted)" if result.is_interrupted else ""
        print(f"[turn {result.turn_id}] {name}: {result.reply}{suffix}")
    for error in result.errors:
        print(f"[turn {result.turn_id}] error: {error}")
    if result.latency is not None and result.latency.voice_to_voice_ms is not None:
        print(f"[turn {result.turn_id}] voice to voice: {result.latency.voice_to_voice_ms:.0f} ms")
    sys.stdout.flush()
