"""`saijin run`: the voice conversation — microphone, browser or WAV file in; speaker, browser or WAV out."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path

from assistant.cli.common import conversation_options, print_turn
from assistant.config import load_settings
from assistant.errors import UsageError
from assistant.events import MODES, Event, Interrupted, TurnDone, TurnDropped
from assistant.pipeline.assemble import Conversation, InputKind, OutputKind

log = logging.getLogger(__name__)

HELP = "voice conversation: --input mic|browser|FILE.wav, --output speaker|browser|FILE.wav"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--persona", metavar="ID", help="who answers first")
    parser.add_argument("--mode", choices=MODES, help="conversation mode")
    parser.add_argument("--input", default="mic", metavar="mic|browser|FILE.wav", help="where speech comes from (default: mic)")
    parser.add_argument("--output", metavar="speaker|browser|FILE.wav",
                        help="where replies are spoken (default: speaker; browser with --input browser)")
    parser.add_argument("--no-voice", action="store_true", help="print replies without speaking them")
    parser.add_argument("--fast", action="store_true", help="read a WAV input as fast as possible instead of in real time")
    parser.add_argument("--no-bridge", action="store_true", help="do not start the avatar page")


def _input(value: str) -> tuple[InputKind, Path | None]:
    if value == "mic":
        return "mic", None
    if value == "browser":
        return "browser", None
    path = Path(value)
    if path.suffix.lower() != ".wav" and not path.exists():
        raise UsageError(f"--input {value}: use mic, browser or a .wav file")
    return "file", path


def _output(value: str | None, input_kind: InputKind) -> tuple[OutputKind, Path | None]:
    if value is None:
        return ("browser" if input_kind == "browser" else "speaker"), None
    if value == "speaker":
        return "speaker", None
    if value == "browser":
        return "browser", None
    if not value.lower().endswith(".wav"):
        raise UsageError(f"--output {value}: use speaker, browser or a .wav file")
    return "file", Path(value)


async def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, args.profile)
    options = conversation_options(args, settings)
    options.input, options.input_path = _input(args.input)
    options.output, options.output_path = _output(args.output, options.input)
    if args.no_voice:
        options.output = "none"
    options.is_realtime = not args.fast and settings.assistant.audio.realtime_file_input
    options.with_bridge = settings.assistant.bridge.enabled and not args.no_bridge and options.input != "file"
    options.start_engines = True
    async with Conversation(settings, options) as conversation:
        names = {p.id: p.display_name for p in settings.personas.values()}
        shown: set[int] = set()

        def show(event: Event) -> None:
            if isinstance(event, TurnDone | TurnDropped | Interrupted) and event.turn_id not in shown:
                result = conversation.result(event.turn_id)
                if result is not None:
                    shown.add(event.turn_id)  # a turn may end in two ways at once (dropped, then cancelled)
                    print_turn(result, names)

        conversation.bus.subscribe(show)
        # While the user begins to speak, the engine reads the persona's prompt and its connection opens, so
        # the first reply comes as fast as the later ones.
        warming = asyncio.create_task(conversation.warm_up(), name="warm-up")
        is_live = options.input != "file"

        def warmed(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                log.debug("warm-up failed", exc_info=task.exception())
            if is_live and not task.cancelled():
                print("ready: listening… (Ctrl-C to stop)", file=sys.stderr)

        warming.add_done_callback(warmed)
        if conversation.bridge is not None:
            print(f"avatar page: {conversation.bridge.url}   websocket: {conversation.bridge.ws_url}", file=sys.stderr)
        try:
            if not is_live:
                await conversation.pipeline.wait_runners()
                await conversation.pipeline.wait_idle()
                return 0
            print("getting ready (the model reads its prompt; you may already speak)…", file=sys.stderr)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()  # until Ctrl-C
        finally:
            warming.cancel()
    return 0
