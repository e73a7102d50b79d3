"""`saijin service install|uninstall`: systemd --user units for the resident vLLM engines and the assistant."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from assistant.config.loader import load_settings
from assistant.ops.systemd import (
    can_use_systemctl,
    installed_units,
    manual_steps,
    render_units,
    systemctl,
    user_unit_dir,
    write_units,
)

HELP = "install or remove systemd user units for the vLLM engines and the assistant"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("install", "uninstall"))
    parser.add_argument("--unit-dir", metavar="DIR", help="where to write the units (default: ~/.config/systemd/user)")
    parser.add_argument("--dry-run", action="store_true", help="print the units and the steps; change nothing")
    parser.add_argument("--no-start", action="store_true", help="write and enable the units but do not start them now")
    parser.add_argument("--run-args", default="", metavar="ARGS",
                        help="extra arguments for `saijin run` in the assistant unit, e.g. \"--input browser\"")


def run(args: argparse.Namespace) -> int:
    unit_dir = Path(args.unit_dir).expanduser() if args.unit_dir else user_unit_dir()
    if args.action == "uninstall":
        return _uninstall(unit_dir, args.dry_run)
    settings = load_settings(args.config, args.profile)
    plan = render_units(settings, run_args=shlex.split(args.run_args))
    if args.dry_run:
        for name, text in plan.units.items():
            print(f"# ---- {unit_dir / name}\n{text}")
        print("\n".join(manual_steps(plan, unit_dir, written=False)))
        return 0
    for path in write_units(plan, unit_dir):
        print(f"wrote {path}")
    if unit_dir.resolve() != user_unit_dir().resolve():
        print(f"{unit_dir} is not systemd's user unit folder, so nothing was enabled. Run these steps:")
        print("\n".join(manual_steps(plan, unit_dir, written=True, linked=False)))
        return 0
    if not can_use_systemctl():
        print("systemd is not running for this user, so nothing was enabled. Run these steps:")
        print("\n".join(manual_steps(plan, unit_dir, written=True)))
        return 0
    systemctl("daemon-reload")
    systemctl("enable", *([] if args.no_start else ["--now"]), *plan.names)
    print(f"enabled{'' if args.no_start else ' and started'}: {', '.join(plan.names)}")
    print("keep them running without a login session: loginctl enable-linger $USER")
    print("follow the logs: journalctl --user -u saijin.service -f  (engines: data/logs/<engine>.log)")
    return 0


def _uninstall(unit_dir: Path, dry_run: bool) -> int:
    units = installed_units(unit_dir)
    if not units:
        print(f"no Saijin units in {unit_dir}")
        return 0
    names = [u.name for u in units]
    if dry_run:
        print(f"would stop, disable and remove: {', '.join(str(u) for u in units)}")
        return 0
    active = unit_dir.resolve() == user_unit_dir().resolve() and can_use_systemctl()
    if active:
        systemctl("disable", "--now", *names)
    for unit in units:
        unit.unlink()
        print(f"removed {unit}")
    if active:
        systemctl("daemon-reload")
    return 0
