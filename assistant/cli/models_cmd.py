"""`saijin models download ENGINE`: fetch an engine's model into its configured folder and check it is complete."""

from __future__ import annotations

import argparse

from assistant.config.loader import load_settings
from assistant.ops.model_download import download, download_target

HELP = "download an engine's model (resumable) into its configured folder and check it is complete"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("download",), help="download: fetch with progress, resume, then check")
    parser.add_argument("engine", metavar="ENGINE", help="a routing.yaml vLLM engine, e.g. AI_1")
    parser.add_argument("--endpoint", metavar="URL", help="the hub to fetch from (default: $HF_ENDPOINT or huggingface.co)")
    parser.add_argument("--max-workers", type=int, default=4, metavar="N", help="files fetched at once")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, args.profile)
    target = download_target(settings, args.engine)
    where = str(target.folder) if target.folder else "the Hugging Face cache"
    via = f" (the end of {target.configured}'s links)" if target.configured else ""
    print(f"{target.engine}: fetching {target.repo_id} into {where}{via}", flush=True)
    path, result = download(target, args.endpoint, args.max_workers)
    print(f"{target.engine}: {path}: {result.text()}", flush=True)
    if not result.ok:
        print(f"run `saijin models download {target.engine}` again to fetch what is missing (it resumes)")
        return 1
    return 0
