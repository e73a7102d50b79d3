"""What several commands share: conversation options from arguments, the voice output, error lines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from assistant.config.loader import Settings
from assistant.pipeline.assemble import Options


def conversation_options(args: argparse.Namespace, settings: Settings) -> Options:
    """The options every conversation command shares (--persona, --mode, --llm-url/model, --events)."""
    return Options(
        persona=getattr(args, "persona", None),
        mode=getattr(args, "mode", None),
        llm_url=getattr(args, "llm_url", None),
        llm_model=getattr(args, "llm_model", None),
        events_path=Path(args.events) if getattr(args, "events", None) else None,
    )


def voice_output(settings: Settings) -> str:
    """Where spoken replies go by default: the speaker."""
    del settings
    return "speaker"


def print_error(message: str) -> None:
    print(f"saijin: {message}", file=sys.stderr)
