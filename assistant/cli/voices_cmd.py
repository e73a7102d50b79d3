"""`saijin voices list|download NAME`: the voices of voices/manifest.yaml, and fetching one into voices/."""

from __future__ import annotations

import argparse
from pathlib import Path

from assistant.errors import UsageError

HELP = "list the known voices, or download one into voices/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="every known voice and whether it is installed")
    download = actions.add_parser("download", help="download a voice into voices/ (checksum checked)")
    download.add_argument("name", metavar="NAME", help="a voice name from `saijin voices list`")
    download.add_argument("--force", action="store_true", help="download again even if it is there")
    parser.add_argument("--voices-dir", metavar="DIR", help="the voices folder (default: $SAIJIN_VOICES or ./voices)")


def _directory(args: argparse.Namespace) -> Path | None:
    if args.voices_dir:
        return Path(args.voices_dir).expanduser().resolve()
    if args.config:
        candidate = Path(args.config).expanduser().resolve().parent / "voices"
        if (candidate / "manifest.yaml").is_file():
            return candidate
    return None


def run(args: argparse.Namespace) -> int:
    from assistant.tts.voices import download, list_voices, voices_dir

    directory = _directory(args) or voices_dir()
    if args.action in (None, "list"):
        rows = list_voices(directory)
        if not rows:
            print(f"no voices known: {directory / 'manifest.yaml'} is missing or empty")
            return 0
        width = max(len(r.name) for r in rows)
        print(f"{'NAME':<{width}}  BACKEND  LANG  STATUS        SOURCE")
        for r in rows:
            print(f"{r.name:<{width}}  {r.backend:<7}  {r.language:<4}  {r.status:<12}  {r.source}")
        return 0
    if args.action == "download":
        paths = download(args.name, directory, force=args.force)
        if not paths:
            print(f"{args.name}: already installed as a Python package")
        for path in paths:
            print(f"{args.name}: {path}")
        return 0
    raise UsageError(f"unknown action {args.action!r} — use `saijin voices list` or `saijin voices download NAME`")
