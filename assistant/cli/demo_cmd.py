"""`saijin demo`: the embedded default, offline — a Japanese and an English spoken turn end to end."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from assistant.audio.wavfile import read_wav, write_wav
from assistant.config import load_settings
from assistant.config.loader import Settings
from assistant.events import Audio, Event
from assistant.models.offline import OFFLINE_MODELS, is_offline, resolve_offline
from assistant.pipeline.assemble import Conversation, Options, TurnResult

HELP = "the embedded default: prepares the offline models and runs a spoken Japanese and English turn"

STAGES = ("end_of_speech", "asr", "emotion", "llm_first_token", "first_sentence", "tts_first_audio", "playback_start")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--persona", metavar="ID", help="who answers (default: assistant.yaml's)")
    parser.add_argument("--out", default="demo-out", metavar="DIR", help="where the spoken replies go (default: demo-out)")
    parser.add_argument("--keep-open", action="store_true",
                        help="keep the avatar page running after the turns until Ctrl-C (default when run in a terminal)")


def _models_in_use(settings: Settings) -> list[str]:
    """offline:NAME models the configuration uses (ASR, engines, voices)."""
    names = [settings.assistant.asr.model]
    names += [engine.model for engine in settings.routing.engines.values() if engine.kind == "embedded"]
    for persona in settings.personas.values():
        for voice in (persona.voice, *persona.alt_voices.values()):
            names.append("offline:kokoro-ja" if voice.backend == "kokoro" else voice.voice)
    return list(dict.fromkeys(n for n in names if is_offline(n)))


def prepare_models(settings: Settings, console: Console) -> None:
    """Assemble the offline models once (joining split files, unpacking into the cache), with progress."""
    names = _models_in_use(settings)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("preparing the offline models", total=len(names))
        for name in names:
            model = OFFLINE_MODELS.get(name.removeprefix("offline:"))
            label = model.description if model else name
            progress.update(task, description=f"preparing {label}")
            resolve_offline(name)
            progress.advance(task)
        progress.update(task, description=f"{len(names)} offline models ready")


def _free_port(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return 0


def _turn_table(language: str, result: TurnResult, names: dict[str, str]) -> Table:
    """One turn: what was heard, how it sounded, who answered what, and where the time went."""
    table = Table(title=f"turn {result.turn_id} ({language})", show_header=False, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    stages = result.latency.stages_ms if result.latency else {}
    v2v = result.latency.voice_to_voice_ms if result.latency else None
    table.add_row("heard", result.heard or "—")
    table.add_row("emotion", result.emotion or "—")
    table.add_row("persona", names.get(result.persona, result.persona or "—"))
    table.add_row("reply", result.reply or ("; ".join(result.errors) or "—"))
    table.add_row("stages (ms)", "  ".join(f"{name.replace('_', ' ')} {stages[name]:.0f}" for name in STAGES
                                           if name in stages) or "—")
    table.add_row("voice to voice", f"{v2v:.0f} ms" if v2v is not None else "—")
    return table


async def run(args: argparse.Namespace) -> int:
    from assistant.bench.samples import sample_utterances

    console = Console(stderr=False)
    settings = load_settings(args.config, args.profile or "cpu")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # The demo keeps its own memory, so it never mixes with the user's conversations.
    settings.assistant.data_dir = str(out / "data")
    settings.assistant.memory.database = str(out / "data" / "memory.db")
    settings.assistant.bridge.port = _free_port(settings.assistant.bridge.port)

    console.print(f"[bold]Saijin demo[/bold] — profile [cyan]{settings.profile}[/cyan], everything on this machine")
    await asyncio.to_thread(prepare_models, settings, console)
    with console.status("synthesising the sample utterances (a real voice speaks them)…"):
        samples = await asyncio.to_thread(sample_utterances)

    options = Options(persona=args.persona, input="feed", output="file", output_path=out / "all-replies.wav",
                      with_bridge=True, events_path=out / "events.jsonl", start_engines=True)
    spoken: dict[int, list[Audio]] = defaultdict(list)

    def keep_audio(event: Event) -> None:
        if isinstance(event, Audio) and event.samples.size:
            spoken[event.turn_id].append(event)

    results: list[tuple[str, TurnResult]] = []
    async with Conversation(settings, options) as conversation:
        conversation.bus.subscribe(keep_audio)
        assert conversation.bridge is not None
        console.print(f"avatar page: [link]{conversation.bridge.url}[/link]  (open it to watch the turns)")
        with console.status("loading the models and reading the persona's prompt…"):
            await conversation.warm_up()
        for sample in samples:
            console.print(f"[dim]you say ({sample.language}):[/dim] {sample.text}")
            audio = await asyncio.to_thread(read_wav, sample.path)
            with console.status("listening, thinking, speaking…"):
                turns = await conversation.hear(audio, 16000)
            for result in turns:
                results.append((sample.language, result))
                if result.turn_id in spoken:
                    path = out / f"turn-{result.turn_id}-{sample.language}.wav"
                    pieces = spoken[result.turn_id]
                    write_wav(path, np.concatenate([p.samples for p in pieces]), pieces[0].sample_rate)
        names = {p.id: p.display_name for p in settings.personas.values()}
        for language, result in results:
            console.print(_turn_table(language, result, names))
        console.print(f"spoken replies: {out}/turn-*.wav   events: {out / 'events.jsonl'}")
        console.print(f"avatar page: {conversation.bridge.url}   websocket: {conversation.bridge.ws_url}")
        if args.keep_open or (sys.stdin.isatty() and sys.stdout.isatty()):
            console.print("the page stays up — Ctrl-C to stop")
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
    answered = [r for _, r in results if r.sentences and not r.errors]
    return 0 if answered else 1
