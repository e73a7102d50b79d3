"""`saijin doctor [--json]`: check the environment, models, GPU fit, engines, audio and ports."""

from __future__ import annotations

import argparse
import json

from assistant.audio.devices import describe_devices
from assistant.config.loader import Settings, load_settings
from assistant.ops.doctor import Check, DoctorOptions, run_doctor

HELP = "check the environment, models, GPU fit, engines, audio and ports (exit 1 on any FAIL)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list of {name, status, detail, fix}")
    parser.add_argument("--gpu-memory-gb", type=float, metavar="GB",
                        help="plan for a GPU with this much memory (default: ask NVML / nvidia-smi; "
                             "also $SAIJIN_GPU_MEMORY_GB)")
    parser.add_argument("--engine-timeout", type=float, default=2.0, metavar="S",
                        help="seconds to wait for each engine's answer")


def sound_devices(settings: Settings) -> list[Check]:
    """The microphone and the speaker `saijin run` would open (assistant.audio knows the devices; ops cannot
    import it, so the command joins the two)."""
    audio = settings.assistant.audio
    return [Check(f"audio {role}", "PASS" if found else "FAIL", detail,
                  "" if found else f"set audio.{'input' if role == 'microphone' else 'output'}_device, or see "
                                   f"docs/operations.md (sound devices)")
            for role, found, detail in describe_devices(audio.input_device, audio.output_device)]


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, args.profile)
    checks = run_doctor(settings, DoctorOptions(args.gpu_memory_gb, args.engine_timeout)) + sound_devices(settings)
    failed = any(c.status == "FAIL" for c in checks)
    if args.json:
        print(json.dumps([c.to_dict() for c in checks], ensure_ascii=False, indent=2))
        return 1 if failed else 0
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    colours = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red"}
    table = Table(title=f"saijin doctor — config {settings.config_dir}, profile {settings.profile}",
                  title_justify="left", show_lines=False)
    table.add_column("status")
    table.add_column("check")
    table.add_column("detail", overflow="fold")
    table.add_column("fix", overflow="fold")
    for check in checks:
        table.add_row(Text(check.status, style=colours[check.status]), check.name, check.detail, check.fix)
    console = Console()
    console.print(table)
    counts = {s: sum(c.status == s for c in checks) for s in ("PASS", "WARN", "FAIL")}
    console.print(f"{counts['PASS']} passed, {counts['WARN']} warnings, {counts['FAIL']} failed")
    return 1 if failed else 0
