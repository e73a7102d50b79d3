"""`saijin memory show|search|export|forget`: look into, save or erase the persistent memory."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from assistant.config.loader import Settings, load_settings
from assistant.errors import UsageError
from assistant.memory.facts import format_fact
from assistant.memory.store import ForgetResult, MemoryStore, Turn, database_path

HELP = "the persistent memory: show, search, export (JSON Lines) or forget what was said"

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="recent turns, facts and summaries")
    show.add_argument("--persona", metavar="ID", help="only this persona")
    show.add_argument("--limit", type=_positive_int, default=20, metavar="N", help="how many turns (default 20)")
    search = actions.add_parser("search", help="turns (and facts) containing every word of QUERY")
    search.add_argument("query", nargs="+", metavar="QUERY")
    search.add_argument("--persona", metavar="ID", help="only this persona")
    search.add_argument("--limit", type=_positive_int, default=10, metavar="N", help="how many hits (default 10)")
    export = actions.add_parser("export", help="everything as JSON Lines, to FILE or standard output")
    export.add_argument("file", nargs="?", default="-", metavar="FILE", help="where to write (default: - for stdout)")
    export.add_argument("--persona", metavar="ID", help="only this persona")
    forget = actions.add_parser("forget", help="erase turns, facts and summaries (all, by persona, by date range)")
    forget.add_argument("--persona", metavar="ID", help="only this persona")
    forget.add_argument("--since", metavar="DATE", help="from this day or time on (YYYY-MM-DD[THH:MM], today, yesterday)")
    forget.add_argument("--until", metavar="DATE", help="up to and including this day (or before this time)")
    forget.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    for action in (show, search, export, forget):
        # The global options also work after the action (`saijin memory show --config DIR`).
        action.add_argument("--config", metavar="DIR", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        action.add_argument("--profile", metavar="NAME", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, args.profile)
    path = database_path(settings)
    if args.action == "export" and args.file != "-" and Path(args.file).resolve() == path.resolve():
        raise UsageError(f"{args.file}: that is the memory database itself — choose another file to export to")
    if not path.exists():
        if args.action == "export":
            _open_output(args.file).close()
        print(f"no memory yet ({path} does not exist)", file=sys.stderr)
        return 0
    with MemoryStore(path, synchronous=settings.assistant.memory.synchronous) as store:
        if args.action == "show":
            return _show(store, settings, args.persona, args.limit)
        if args.action == "search":
            return _search(store, " ".join(args.query), args.persona, args.limit)
        if args.action == "export":
            return _export(store, args.file, args.persona)
        return _forget(store, args)


def _show(store: MemoryStore, settings: Settings, persona: str | None, limit: int) -> int:
    stats = store.stats()
    by_persona = ", ".join(f"{name} {count}" for name, count in stats["turns_by_persona"].items())
    print(f"memory: {stats['path']} — {stats['turns']} turns" + (f" ({by_persona})" if by_persona else "")
          + f", {stats['facts']} facts, {stats['summaries']} summaries")
    personas = [persona] if persona else sorted(set(stats["turns_by_persona"]) | {f.persona for f in store.facts()})
    if persona and persona not in stats["turns_by_persona"] and persona not in settings.personas:
        print(f"(no persona named {persona!r} in the config, and no turns for it)")
    for name in personas:
        facts = store.facts(name)
        if facts:
            print(f"\nfacts ({name}):")
            for fact in facts:
                print(f"  {format_fact(fact)}")
        summary = store.latest_summary(name)
        if summary:
            print(f"\nsummary ({name}, up to turn {summary.up_to_turn}):\n  {summary.text}")
    turns = store.turns(persona, limit=limit)
    if turns:
        print(f"\nlast {len(turns)} turns:")
        for turn in turns:
            print(_turn_line(turn))
    return 0


def _search(store: MemoryStore, query: str, persona: str | None, limit: int) -> int:
    hits = store.search(query, persona=persona, limit=limit)
    facts = store.search_facts(query.split(), persona=persona, limit=limit, require_all=True)
    for fact in facts:
        print(f"fact  {fact.persona:<10} {format_fact(fact)}")
    for hit in hits:
        print(_turn_line(hit.turn))
    if not hits and not facts:
        print(f"nothing found for {query!r}", file=sys.stderr)
    return 0


def _export(store: MemoryStore, file: str, persona: str | None) -> int:
    handle = _open_output(file)
    try:
        count = store.export_jsonl(handle, persona=persona)
    finally:
        if handle is not sys.stdout:
            handle.close()
    where = "standard output" if file == "-" else file
    print(f"exported {count} records to {where}", file=sys.stderr)
    return 0


def _forget(store: MemoryStore, args: argparse.Namespace) -> int:
    since = parse_when(args.since, "--since") if args.since else None
    until = parse_when(args.until, "--until", end_of_day=True) if args.until else None
    if since and until and since >= until:
        raise UsageError(f"--since {args.since} is not before --until {args.until} — swap them or widen the range")
    preview = store.forget(args.persona, since, until, dry_run=True)
    scope = _scope(args.persona, args.since, args.until)
    if not preview.total:
        print(f"nothing to forget ({scope})")
        return 0
    question = f"Forget {_counts(preview)} ({scope})? This cannot be undone. [y/N] "
    if not args.yes and not _confirm(question):
        print("nothing was forgotten", file=sys.stderr)
        return 1
    done = store.forget(args.persona, since, until)
    print(f"forgot {_counts(done)} ({scope})")
    return 0


def parse_when(value: str, option: str, end_of_day: bool = False) -> datetime:
    """A day or a time in local time; a bare day as an upper bound means the end of that day."""
    text = value.strip().lower()
    today = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
    relative = {"today": today, "yesterday": today - timedelta(days=1)}
    if text in relative:
        moment, is_day = relative[text], True
    else:
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise UsageError(f"{option}: not a date or time (got {value!r}) — use YYYY-MM-DD, "
                             f"YYYY-MM-DDTHH:MM, today or yesterday") from None
        is_day = bool(_DATE_ONLY.match(value.strip()))
    return moment + timedelta(days=1) if is_day and end_of_day else moment


def _confirm(question: str) -> bool:
    try:
        answer = input(question)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes", "はい")


def _scope(persona: str | None, since: str | None, until: str | None) -> str:
    parts = [f"persona {persona}" if persona else "all personas"]
    if since:
        parts.append(f"since {since}")
    if until:
        parts.append(f"until {until}")
    if not (persona or since or until):
        return "everything"
    return ", ".join(parts)


def _counts(result: ForgetResult) -> str:
    def plural(n: int, word: str, many: str) -> str:
        return f"{n} {word if n == 1 else many}"
    return (f"{plural(result.turns, 'turn', 'turns')}, {plural(result.facts, 'fact', 'facts')} "
            f"and {plural(result.summaries, 'summary', 'summaries')}")


def _turn_line(turn: Turn) -> str:
    when = datetime.fromtimestamp(turn.created_at).strftime("%Y-%m-%d %H:%M")
    notes = []
    if turn.emotion:
        notes.append(f"{turn.emotion} {turn.emotion_score:.2f}" if turn.emotion_score is not None else turn.emotion)
    if turn.is_interrupted:
        notes.append("interrupted")
    suffix = f"  ({', '.join(notes)})" if notes else ""
    return f"#{turn.id:<6} {when}  {turn.persona:<10} {turn.role:<9} {turn.text}{suffix}"


def _open_output(file: str) -> TextIO:
    if file == "-":
        return sys.stdout
    try:
        return open(file, "w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{file}: cannot write the export ({exc.strerror}) — choose another file") from None


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got {value!r})") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {number})")
    return number
