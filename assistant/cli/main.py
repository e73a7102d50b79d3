"""The `saijin` entry point: parses arguments, sets up logging, runs a subcommand, maps errors to exit codes.

Each subcommand lives in ``assistant/cli/<name>_cmd.py`` with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int`` (sync) or ``async run(args) -> int``. Commands whose module is missing are not listed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import sys
from types import ModuleType
from typing import Any

from assistant.errors import SaijinError

COMMANDS = ("run", "chat", "demo", "bench", "doctor", "llm", "service", "status", "memory", "voices", "bridge",
            "backup", "restore", "models")
#: Commands that talk to a language model and write conversation events.
CONVERSATION_COMMANDS = ("run", "chat", "demo", "bench")

log = logging.getLogger("saijin")


def _load_commands() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for name in COMMANDS:
        try:
            found[name] = importlib.import_module(f"assistant.cli.{name}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name != f"assistant.cli.{name}_cmd":
                raise
    return found


def build_parser(commands: dict[str, ModuleType]) -> argparse.ArgumentParser:
    def global_options(defaults: bool) -> argparse.ArgumentParser:
        # Accepted before and after the command; only the top level sets defaults, so that a value given
        # before the command is not reset by the subcommand's own default.
        common = argparse.ArgumentParser(add_help=False)
        unset: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
        common.add_argument("--config", metavar="DIR", help="configuration folder (default: ./config)", **unset)
        common.add_argument("--profile", metavar="NAME", help="profile overlay: cpu, gpu, ... (default: from assistant.yaml)",
                            **unset)
        common.add_argument("-v", "--verbose", action="count", help="log more (-vv for debug); tracebacks go to the log",
                            **({"default": 0} if defaults else unset))
        return common

    parser = argparse.ArgumentParser(
        prog="saijin",
        description="Saijin — a local, voice-first companion. / ローカルで動く、声で話せる相棒。",
        parents=[global_options(defaults=True)],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in commands.items():
        command = sub.add_parser(name, parents=[global_options(defaults=False)], help=module.HELP, description=module.HELP)
        if name in CONVERSATION_COMMANDS:
            command.add_argument("--llm-url", metavar="URL", help="talk to this OpenAI-compatible server instead of the routed engine")
            command.add_argument("--llm-model", metavar="NAME", help="the model name to ask that server for")
            command.add_argument("--events", metavar="FILE", help="write every event as a JSON line to FILE")
        module.add_arguments(command)
    return parser


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbosity == 0:
        # Without -v, nothing below WARNING and no tracebacks reach the screen.
        for handler in logging.getLogger().handlers:
            handler.addFilter(_no_tracebacks)
    for noisy in ("httpx", "httpcore", "openai", "websockets", "asyncio", "urllib3", "numba", "matplotlib"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _no_tracebacks(record: logging.LogRecord) -> bool:
    record.exc_info = None
    record.exc_text = None
    record.stack_info = None
    return True


def main(argv: list[str] | None = None) -> int:
    commands = _load_commands()
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if not args.command:
        parser.print_help()
        return 2
    module = commands[args.command]
    try:
        result = module.run(args)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except SaijinError as exc:
        log.debug("failed", exc_info=True)
        print(f"saijin: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one line on screen, the traceback in the log with -v
        log.debug("unexpected error", exc_info=True)
        print(f"saijin: unexpected error: {type(exc).__name__}: {exc} (run with -v for details)", file=sys.stderr)
        return 1
