"""`saijin backup [--output DIR]`: archive config/ and the memory database with a timestamp."""

from __future__ import annotations

import argparse
from pathlib import Path

from assistant.config.loader import load_settings
from assistant.ops.backup import create_backup, database_path

HELP = "archive config/ and the memory database (safe while the assistant runs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", metavar="DIR", help="where to write the archive (default: data/backups/)")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, args.profile)
    archive = create_backup(settings, Path(args.output).expanduser() if args.output else None)
    database = database_path(settings)
    what = f"config {settings.config_dir}" + (f" and {database}" if database.is_file() else " (no memory database yet)")
    print(f"{archive}  ({what})")
    return 0
