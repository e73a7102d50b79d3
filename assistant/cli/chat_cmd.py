"""`saijin chat`: a typed conversation with streamed replies; `--say TEXT` does one turn and exits."""

from __future__ import annotations

import argparse
import asyncio
import sys

from assistant.cli.common import conversation_options, print_error
from assistant.config import load_settings
from assistant.events import MODES, Event, Notice, Subtitle, TurnDone
from assistant.pipeline.assemble import Conversation

HELP = "typed conversation (--say TEXT: one turn, print the reply, exit)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--persona", metavar="ID", help="who answers (default: the last one, or assistant.yaml's)")
    parser.add_argument("--mode", choices=MODES, help="conversation mode")
    parser.add_argument("--say", metavar="TEXT", help="say one thing, print the reply and exit")
    parser.add_argument("--no-voice", action="store_true", help="print replies without speaking them")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one reply (default 300)")


async def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, args.profile)
    options = conversation_options(args, settings)
    options.output = "none" if args.no_voice else "speaker"
    async with Conversation(settings, options) as conversation:
        if args.say is not None:
            result = await conversation.say(args.say, timeout=args.timeout)
            if result.errors:
                print_error(result.errors[0])
                return 1
            for notice in result.notices:
                print(f"({notice})", file=sys.stderr)
            print(result.reply)
            return 0
        return await _interactive(conversation)


async def _interactive(conversation: Conversation) -> int:
    names = {p.id: p.display_name for p in conversation.settings.personas.values()}
    line_open = False

    def show(event: Event) -> None:
        nonlocal line_open
        if isinstance(event, Subtitle):
            if not line_open:
                print(f"{names.get(event.persona, event.persona)}> ", end="")
                line_open = True
            print(event.text, end=" " if event.text[-1:].isascii() else "", flush=True)
        elif isinstance(event, TurnDone) and line_open:
            print()
            line_open = False
        elif isinstance(event, Notice):
            print(f"\n({event.message})", file=sys.stderr)

    conversation.bus.subscribe(show)
    print("Ctrl-D で終了 / Ctrl-D to quit", file=sys.stderr)
    while True:
        try:
            text = await asyncio.to_thread(input, "あなた> ")
        except EOFError:
            print()
            return 0
        if not text.strip():
            continue
        result = await conversation.say(text)
        if line_open:
            print()
            line_open = False
        for error in result.errors:
            print_error(error)


