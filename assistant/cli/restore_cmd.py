"""`saijin restore ARCHIVE`: validate a backup, then put its config/ and memory database back in place."""

from __future__ import annotations

import argparse
from pathlib import Path

from assistant.config.loader import default_config_dir, load_settings
from assistant.errors import ConfigError
from assistant.ops.backup import RestoreTarget, restore_backup

HELP = "restore a `saijin backup` archive (validated first; the replaced files are kept)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", metavar="ARCHIVE", help="a saijin-backup-*.tar.gz file")


def run(args: argparse.Namespace) -> int:
    try:
        target = RestoreTarget.from_settings(load_settings(args.config, args.profile))
    except ConfigError:
        # A broken config is a good reason to restore: find the folders without loading it.
        config_dir = Path(args.config).expanduser().resolve() if args.config else default_config_dir()
        target = RestoreTarget.from_config_dir(config_dir)
        target.profile = args.profile
    result = restore_backup(target, Path(args.archive).expanduser())
    database = "the memory database and " if result.restored_database else ""
    print(f"restored {database}{result.config_files} config file(s) from {result.archive}; "
          f"the replaced files are in {result.kept}")
    return 0
