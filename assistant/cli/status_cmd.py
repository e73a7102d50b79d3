"""`saijin status [--watch] [--json]`: engines, GPU memory, RAM and recent voice-to-voice latency."""

from __future__ import annotations

import argparse
import asyncio
import json

from assistant.config.loader import Settings, load_settings
from assistant.ops.status import collect_status, render

HELP = "engines, VRAM/RAM and recent latency (--watch refreshes in place)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
    parser.add_argument("--interval", type=float, default=2.0, metavar="S", help="--watch: seconds between refreshes")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.add_argument("--gpu-memory-gb", type=float, metavar="GB", help="state the GPU memory (no GPU to ask)")


async def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, args.profile)
    if args.json:
        report = await collect_status(settings, gpu_memory_gb=args.gpu_memory_gb)
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        return 0
    from rich.console import Console

    console = Console()
    if not args.watch:
        console.print(render(await collect_status(settings, gpu_memory_gb=args.gpu_memory_gb)))
        return 0
    from rich.live import Live

    interval = max(0.5, args.interval)
    with Live(render(await collect_status(settings, gpu_memory_gb=args.gpu_memory_gb)), console=console,
              auto_refresh=False) as live:
        try:
            while True:
                await asyncio.sleep(interval)
                live.update(render(await collect_status(settings, gpu_memory_gb=args.gpu_memory_gb)), refresh=True)
        except asyncio.CancelledError:
            pass
    return 0


async def print_engines(settings: Settings, engine: str | None, as_json: bool = False) -> int:
    """The engines part of the status (for `saijin llm status`)."""
    if engine and engine not in settings.routing.engines:
        from assistant.errors import UsageError

        raise UsageError(f"no engine named {engine!r} — routing.yaml has: {', '.join(settings.routing.engines)}")
    report = await collect_status(settings, engine)
    if as_json:
        print(json.dumps(report.to_dict()["engines"], ensure_ascii=False, indent=2))
        return 0
    from rich.console import Console

    Console().print(render(report).renderables[0])
    return 0
