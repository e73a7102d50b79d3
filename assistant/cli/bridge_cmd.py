"""`saijin bridge`: serve the Live2D page and its WebSocket alone (no assistant attached) until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import logging

from assistant.config.loader import load_settings
from assistant.errors import UsageError
from assistant.events import Event, Mode, Notice, SetMode, SetPersona, Speaker, TextInput

HELP = "serve the Live2D page and WebSocket only; prints both URLs"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", metavar="H", help="address to bind (default: bridge.host, 127.0.0.1)")
    parser.add_argument("--port", metavar="P", type=int, help="port (default: bridge.port, 8765; 0 picks a free one)")
    parser.add_argument("--token", metavar="T", help="token pages must pass as ?token= (required off loopback)")


async def run(args: argparse.Namespace) -> int:
    from live2d_bridge.server import BridgeServer

    settings = load_settings(args.config, args.profile)
    updates = {k: v for k, v in (("host", args.host), ("port", args.port), ("token", args.token)) if v is not None}
    if args.port is not None and not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be from 0 to 65535 (got {args.port})")
    cfg = settings.assistant.bridge.model_copy(update=updates)
    personas = list(settings.personas.values())
    by_id = {p.id: p for p in personas}
    server: BridgeServer

    def on_input(event: Event) -> None:
        # Alone, the bridge answers what it can itself: persona and mode choices are echoed back to every page.
        if isinstance(event, SetPersona) and event.persona in by_id:
            server.publish(Speaker(persona=event.persona, display_name=by_id[event.persona].display_name))
        elif isinstance(event, SetMode):
            server.publish(Mode(value=event.value))
        elif isinstance(event, TextInput):
            server.publish(Notice(message="the bridge runs alone (saijin bridge) — start `saijin run --input browser` "
                                          "to talk"))
        log.info("page sent %s", event.type)

    persona = settings.assistant.persona if settings.assistant.persona in by_id else None
    server = BridgeServer(cfg, personas, on_input, base_dir=settings.config_dir, persona=persona,
                          send_audio=settings.assistant.tts.send_audio_to_page)
    await server.start()
    print(f"page:      {server.url}", flush=True)
    print(f"websocket: {server.ws_url}", flush=True)
    print("Ctrl-C stops the bridge.", flush=True)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        pass
    finally:
        await server.stop()
    return 0
