"""The persistent memory in SQLite: turns, rolling summaries and facts, with Japanese-friendly full-text search.

Durability: the database runs in WAL mode. ``add_turn`` commits before it returns, so a turn that was added
before the reply started survives the process being killed (``kill -9``): with WAL the commit is in the WAL
file (the operating system's page cache) when ``COMMIT`` returns, and ``synchronous=NORMAL`` only skips the
fsync that protects against a power cut or an OS crash. ``synchronous="full"`` (config
``memory.synchronous: full``) adds that fsync on every commit, for machines that lose power.

Search: an FTS5 index with the ``trigram`` tokenizer over turns and facts, so Japanese (no spaces between
words) is found by any three characters it shares with the query. The index is derived data: it is created
and filled on open when missing. Terms shorter than three characters, or an SQLite without the trigram
tokenizer (before 3.34), fall back to ``LIKE`` scanning.

One connection is shared behind a lock, so the store can be used from ``asyncio.to_thread`` workers.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from assistant.errors import SaijinError

if TYPE_CHECKING:
    from assistant.config.loader import Settings

log = logging.getLogger(__name__)

Role = Literal["user", "assistant"]
ROLES: tuple[str, ...] = ("user", "assistant")
#: Weight of recency in search ranking: a hit from now scores up to this much more than an old one.
RECENCY_WEIGHT = 0.5
#: Age at which the recency bonus has halved.
RECENCY_HALF_LIFE_S = 14 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema, applied once, in order, inside one transaction."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "turns and rolling summaries", (
        """CREATE TABLE turns (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            persona TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            text TEXT NOT NULL,
            emotion TEXT,
            emotion_score REAL,
            is_interrupted INTEGER NOT NULL DEFAULT 0 CHECK (is_interrupted IN (0, 1)),
            turn_id INTEGER,
            created_at REAL NOT NULL,
            ended_at REAL
        )""",
        "CREATE INDEX turns_persona_id ON turns (persona, id)",
        "CREATE INDEX turns_created_at ON turns (created_at)",
        """CREATE TABLE summaries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            persona TEXT NOT NULL,
            up_to_turn INTEGER NOT NULL,
            text TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX summaries_persona_turn ON summaries (persona, up_to_turn)",
    )),
    Migration(2, "facts the user told a persona", (
        """CREATE TABLE facts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            persona TEXT NOT NULL,
            kind TEXT NOT NULL,
            text TEXT NOT NULL,
            norm TEXT NOT NULL,
            source_turn INTEGER,
            created_at REAL NOT NULL,
            UNIQUE (persona, kind, norm)
        )""",
        "CREATE INDEX facts_created_at ON facts (created_at)",
    )),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

#: Full-text indexes: (FTS table, content table). Both index the content table's ``text`` column.
_FTS_TABLES: tuple[tuple[str, str], ...] = (("turns_fts", "turns"), ("facts_fts", "facts"))


@dataclass(frozen=True, slots=True)
class Turn:
    """One thing said: by the user or by a persona."""

    id: int
    persona: str
    role: str
    text: str
    emotion: str | None
    emotion_score: float | None
    is_interrupted: bool
    turn_id: int | None
    created_at: float
    ended_at: float | None


@dataclass(frozen=True, slots=True)
class Summary:
    """A rolling summary of a persona's conversation up to (and including) turn ``up_to_turn``."""

    id: int
    persona: str
    up_to_turn: int
    text: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Fact:
    """Something the user told a persona (a name, a like, a plan)."""

    id: int
    persona: str
    kind: str
    text: str
    source_turn: int | None
    created_at: float


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A turn found by a search, with its score (higher is better) and how many query terms it contains."""

    turn: Turn
    score: float
    matched: int


@dataclass(frozen=True, slots=True)
class ForgetResult:
    """How many rows ``forget`` removed (or would remove, for a preview)."""

    turns: int
    facts: int
    summaries: int

    @property
    def total(self) -> int:
        return self.turns + self.facts + self.summaries


_RECORD_NAMES = {"turns": "turn", "facts": "fact", "summaries": "summary"}
_TRIGRAM_SUPPORTED: bool | None = None


def trigram_supported() -> bool:
    """Whether this SQLite has FTS5 with the trigram tokenizer (3.34 and later, built with FTS5)."""
    global _TRIGRAM_SUPPORTED
    if _TRIGRAM_SUPPORTED is None:
        probe = sqlite3.connect(":memory:")
        try:
            probe.execute("CREATE VIRTUAL TABLE probe USING fts5(text, tokenize='trigram')")
            _TRIGRAM_SUPPORTED = True
        except sqlite3.OperationalError:
            _TRIGRAM_SUPPORTED = False
        finally:
            probe.close()
    return _TRIGRAM_SUPPORTED


def quote_fts(term: str) -> str:
    """``term`` as an FTS5 string (a phrase): double quotes inside are doubled, so no syntax leaks through."""
    return '"' + term.replace('"', '""') + '"'


def normalize_fact(text: str) -> str:
    """The form of a fact used to spot duplicates: NFKC, case-folded, single spaces, no end punctuation."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(folded.split()).strip(" 。．.!！?？、,")


def to_timestamp(value: float | datetime | None) -> float | None:
    """Seconds since the epoch from a datetime (naive means local time) or a number; None stays None."""
    if value is None or isinstance(value, int | float):
        return value
    return value.timestamp()


def iso_time(timestamp: float | None) -> str | None:
    """A timestamp as local ISO 8601 with the UTC offset, e.g. 2026-11-03T21:04:05.120+09:00."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="milliseconds")


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _row_to_turn(row: sqlite3.Row) -> Turn:
    return Turn(id=row["id"], persona=row["persona"], role=row["role"], text=row["text"],
                emotion=row["emotion"], emotion_score=row["emotion_score"],
                is_interrupted=bool(row["is_interrupted"]), turn_id=row["turn_id"],
                created_at=row["created_at"], ended_at=row["ended_at"])


def _row_to_fact(row: sqlite3.Row) -> Fact:
    return Fact(id=row["id"], persona=row["persona"], kind=row["kind"], text=row["text"],
                source_turn=row["source_turn"], created_at=row["created_at"])


def _row_to_summary(row: sqlite3.Row) -> Summary:
    return Summary(id=row["id"], persona=row["persona"], up_to_turn=row["up_to_turn"], text=row["text"],
                   created_at=row["created_at"])


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the database (0 for a new, empty one)."""
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if not has_table:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply the migrations after the database's version up to ``target``, each in its own transaction.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Returns the version reached.
    """
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                 "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at REAL NOT NULL)")
    for migration in MIGRATIONS:
        if migration.version > target:
            break
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Checked inside the write lock: another process may have migrated meanwhile.
            if schema_version(conn) >= migration.version:
                conn.execute("ROLLBACK")
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                         (migration.version, migration.description, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("memory schema migrated to version %d (%s)", migration.version, migration.description)
    return schema_version(conn)


def database_path(settings: Settings) -> Path:
    """Where the memory database lives (``memory.database``, relative to the project folder)."""
    return settings.data_path(settings.assistant.memory.database)


class MemoryStore:
    """Turns, summaries and facts of every persona in one SQLite file (WAL)."""

    def __init__(self, path: str | Path, *, synchronous: Literal["normal", "full"] = "normal") -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SaijinError(f"{self.path.parent}: cannot create the memory folder ({exc.strerror}) "
                              f"— check memory.database in config/assistant.yaml") from None
        try:
            self._conn = self._open(synchronous)
        except sqlite3.DatabaseError as exc:
            raise SaijinError(f"{self.path}: cannot open the memory database ({exc}) — move the file aside "
                              f"to start a fresh memory, or restore a backup") from None

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryStore:
        """The store configured by ``memory.database`` and ``memory.synchronous`` in assistant.yaml."""
        config = settings.assistant.memory
        return cls(database_path(settings), synchronous=config.synchronous)

    # ---------------------------------------------------------------------------------------------
    # opening and the schema
    # ---------------------------------------------------------------------------------------------

    def _open(self, synchronous: str) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 10000")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("%s: the file system does not allow WAL mode (got %s); memory writes are slower",
                            self.path, mode)
            conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
            # Forgotten text is overwritten on disk, not just unlinked from the b-tree.
            conn.execute("PRAGMA secure_delete = ON")
            version = schema_version(conn)
            if version > SCHEMA_VERSION:
                raise SaijinError(f"{self.path}: the memory database has schema version {version}, newer than "
                                  f"this Saijin knows ({SCHEMA_VERSION}) — upgrade Saijin")
            migrate(conn)
            self.has_fts = self._ensure_search_index(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _ensure_search_index(self, conn: sqlite3.Connection) -> bool:
        """Create (and fill) the trigram indexes when missing; without trigram support drop their triggers."""
        if not trigram_supported():
            log.warning("SQLite %s has no FTS5 trigram tokenizer (needs 3.34+); memory search scans with LIKE",
                        sqlite3.sqlite_version)
            for fts, _content in _FTS_TABLES:
                for suffix in ("ai", "ad", "au"):
                    conn.execute(f"DROP TRIGGER IF EXISTS {fts}_{suffix}")
            return False
        for fts, content in _FTS_TABLES:
            triggers = {
                f"{fts}_ai": f"CREATE TRIGGER {fts}_ai AFTER INSERT ON {content} BEGIN "
                             f"INSERT INTO {fts} (rowid, text) VALUES (new.id, new.text); END",
                f"{fts}_ad": f"CREATE TRIGGER {fts}_ad AFTER DELETE ON {content} BEGIN "
                             f"INSERT INTO {fts} ({fts}, rowid, text) VALUES ('delete', old.id, old.text); END",
                f"{fts}_au": f"CREATE TRIGGER {fts}_au AFTER UPDATE OF text ON {content} BEGIN "
                             f"INSERT INTO {fts} ({fts}, rowid, text) VALUES ('delete', old.id, old.text); "
                             f"INSERT INTO {fts} (rowid, text) VALUES (new.id, new.text); END",
            }
            present = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger') AND name LIKE ?", (f"{fts}%",))}
            if fts in present and all(name in present for name in triggers):
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5("
                             f"text, content='{content}', content_rowid='id', tokenize='trigram')")
                for name, sql in triggers.items():
                    conn.execute(f"DROP TRIGGER IF EXISTS {name}")
                    conn.execute(sql)
                conn.execute(f"INSERT INTO {fts} ({fts}) VALUES ('rebuild')")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            log.info("memory: built the search index %s", fts)
        for fts, _content in _FTS_TABLES:
            # Per connection, not stored: how many rows hold each trigram (for recall's term weighting).
            conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{fts}_vocab USING fts5vocab(main, {fts}, 'row')")
        return True

    @property
    def schema_version(self) -> int:
        with self._lock:
            return schema_version(self._conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed (durably, see the module doc) when the block ends."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # ---------------------------------------------------------------------------------------------
    # turns
    # ---------------------------------------------------------------------------------------------

    def add_turn(self, persona: str, role: Role, text: str, *, emotion: str | None = None,
                 emotion_score: float | None = None, is_interrupted: bool = False, turn_id: int | None = None,
                 created_at: float | None = None, ended_at: float | None = None) -> int:
        """Store one turn and commit it before returning; returns its row id (ids only grow)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES} (got {role!r})")
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO turns (persona, role, text, emotion, emotion_score, is_interrupted, turn_id, "
                "created_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (persona, role, text, emotion, emotion_score, int(is_interrupted), turn_id,
                 time.time() if created_at is None else created_at, ended_at))
            return int(cursor.lastrowid or 0)

    def finish_turn(self, row_id: int, *, text: str | None = None, is_interrupted: bool | None = None,
                    ended_at: float | None = None) -> None:
        """Complete a stored turn: the text actually spoken, whether it was cut off, when it ended."""
        with self._write() as conn:
            if text is not None:
                conn.execute("UPDATE turns SET text = ? WHERE id = ?", (text, row_id))
            if is_interrupted is not None:
                conn.execute("UPDATE turns SET is_interrupted = ? WHERE id = ?", (int(is_interrupted), row_id))
            conn.execute("UPDATE turns SET ended_at = ? WHERE id = ?",
                         (time.time() if ended_at is None else ended_at, row_id))

    def get_turn(self, row_id: int) -> Turn | None:
        rows = self._query("SELECT * FROM turns WHERE id = ?", (row_id,))
        return _row_to_turn(rows[0]) if rows else None

    def recent(self, persona: str, n: int) -> list[Turn]:
        """The last ``n`` turns of ``persona``, oldest first."""
        if n <= 0:
            return []
        rows = self._query("SELECT * FROM turns WHERE persona = ? ORDER BY id DESC LIMIT ?", (persona, n))
        return [_row_to_turn(row) for row in reversed(rows)]

    def turns(self, persona: str | None = None, *, limit: int | None = None) -> list[Turn]:
        """The last ``limit`` turns (all when None) of one persona or of all, oldest first."""
        where, params = ("WHERE persona = ?", [persona]) if persona else ("", [])
        rows = self._query(f"SELECT * FROM turns {where} ORDER BY id DESC LIMIT ?", [*params, limit or -1])
        return [_row_to_turn(row) for row in reversed(rows)]

    def turn_count(self, persona: str | None = None) -> int:
        if persona is None:
            return int(self._query("SELECT COUNT(*) FROM turns")[0][0])
        return int(self._query("SELECT COUNT(*) FROM turns WHERE persona = ?", (persona,))[0][0])

    def turn_ids(self) -> set[int]:
        """Every stored turn id (for checks and tests)."""
        return {int(row[0]) for row in self._query("SELECT id FROM turns")}

    # ---------------------------------------------------------------------------------------------
    # search
    # ---------------------------------------------------------------------------------------------

    def search(self, query: str, persona: str | None = None, limit: int = 10) -> list[SearchHit]:
        """Turns containing every whitespace-separated part of ``query`` (as a substring), best first.

        Parts of three characters or more use the trigram index (ranked by bm25 and recency); shorter
        parts are matched with LIKE.
        """
        terms = list(dict.fromkeys(query.split()))
        return self.search_terms(terms, persona=persona, limit=limit, require_all=True)

    def search_terms(self, terms: Sequence[str], *, persona: str | None = None, limit: int = 10,
                     require_all: bool = False, exclude_ids: Iterable[int] = (),
                     now: float | None = None) -> list[SearchHit]:
        """Turns containing all (or any) of the literal ``terms``, ranked by relevance and recency."""
        ranked = self._ranked("turns", terms, persona, limit, require_all, set(exclude_ids), now)
        return [SearchHit(_row_to_turn(row), score, matched) for score, row, matched in ranked]

    def search_facts(self, terms: Sequence[str], *, persona: str | None = None, limit: int = 10,
                     require_all: bool = False) -> list[Fact]:
        """Facts containing all (or any) of the literal ``terms``, best first."""
        ranked = self._ranked("facts", terms, persona, limit, require_all, set(), None)
        return [_row_to_fact(row) for _score, row, _matched in ranked]

    def _ranked(self, table: Literal["turns", "facts"], terms: Sequence[str], persona: str | None, limit: int,
                require_all: bool, exclude_ids: set[int], now: float | None,
                ) -> list[tuple[float, sqlite3.Row, int]]:
        """(score, row, how many terms it holds) for the best ``limit`` rows of ``table``."""
        terms = [term for term in dict.fromkeys(terms) if term.strip()]
        if not terms or limit <= 0:
            return []
        long_terms = [term for term in terms if len(term) >= 3]
        short_terms = [term for term in terms if len(term) < 3]
        use_fts = self.has_fts and bool(long_terms) and (require_all or not short_terms)
        filters: list[str] = []
        params: list[Any] = []
        if persona is not None:
            filters.append(f"{table}.persona = ?")
            params.append(persona)
        if exclude_ids:
            filters.append(f"{table}.id NOT IN ({', '.join('?' * len(exclude_ids))})")
            params.extend(sorted(exclude_ids))
        like_terms = short_terms if use_fts else terms
        like_clauses = [f"{table}.text LIKE ? ESCAPE '\\'" for _ in like_terms]
        like_params = [_like_pattern(term) for term in like_terms]
        candidates = max(limit * 5, 50)
        joiner = " AND " if require_all else " OR "
        if use_fts:
            expression = joiner.join(quote_fts(term) for term in long_terms)
            sql = (f"SELECT {table}.*, -bm25({table}_fts) AS relevance FROM {table}_fts "
                   f"JOIN {table} ON {table}.id = {table}_fts.rowid WHERE {table}_fts MATCH ?")
            where = [*filters, *like_clauses]
            if where:
                sql += " AND " + " AND ".join(where)
            sql += f" ORDER BY bm25({table}_fts) LIMIT {candidates}"
            rows = self._query(sql, [expression, *params, *like_params])
        else:
            # Relevance without an index: how many of the terms the text contains.
            matched = " + ".join(f"({clause})" for clause in like_clauses)
            where = [*filters, "(" + joiner.join(like_clauses) + ")"]
            sql = (f"SELECT {table}.*, ({matched}) AS relevance FROM {table} WHERE " + " AND ".join(where)
                   + f" ORDER BY relevance DESC, {table}.id DESC LIMIT {candidates}")
            rows = self._query(sql, [*like_params, *params, *like_params])
        clock = time.time() if now is None else now
        ranked: list[tuple[float, sqlite3.Row, int]] = []
        for row in rows:
            folded = row["text"].casefold()
            matched_terms = sum(1 for term in terms if term.casefold() in folded)
            recency = math.pow(0.5, max(0.0, clock - row["created_at"]) / RECENCY_HALF_LIFE_S)
            score = max(float(row["relevance"]), 1e-9) * (1.0 + RECENCY_WEIGHT * recency)
            ranked.append((score, row, matched_terms))
        ranked.sort(key=lambda item: (item[0], item[1]["id"]), reverse=True)
        return ranked[:limit]

    def term_document_counts(self, terms: Iterable[str], table: Literal["turns", "facts"] = "turns") -> dict[str, int]:
        """How many rows hold each trigram ``term`` (case-folded); empty without the trigram index."""
        wanted = list(dict.fromkeys(term.casefold() for term in terms if len(term) == 3))
        if not self.has_fts or not wanted:
            return {}
        rows = self._query(f"SELECT term, doc FROM temp.{table}_fts_vocab WHERE term IN "
                           f"({', '.join('?' * len(wanted))})", wanted)
        counts = {term: 0 for term in wanted}
        counts.update({row[0]: int(row[1]) for row in rows})
        return counts

    # ---------------------------------------------------------------------------------------------
    # facts
    # ---------------------------------------------------------------------------------------------

    def add_fact(self, persona: str, kind: str, text: str, source_turn: int | None = None, *,
                 replace_kind: bool = False, created_at: float | None = None) -> int:
        """Remember a fact; the same fact again only refreshes it. ``replace_kind``: it supersedes that kind."""
        norm = normalize_fact(text)
        if not norm:
            raise ValueError("a fact needs some text")
        stamp = time.time() if created_at is None else created_at
        with self._write() as conn:
            if replace_kind:
                conn.execute("DELETE FROM facts WHERE persona = ? AND kind = ? AND norm != ?", (persona, kind, norm))
            row = conn.execute(
                "INSERT INTO facts (persona, kind, text, norm, source_turn, created_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (persona, kind, norm) DO UPDATE SET text = excluded.text, "
                "source_turn = COALESCE(excluded.source_turn, facts.source_turn), created_at = excluded.created_at "
                "RETURNING id", (persona, kind, text.strip().rstrip("。．.!！、,").strip(), norm, source_turn,
                                 stamp)).fetchone()
            return int(row[0])

    def facts(self, persona: str | None = None, limit: int | None = None) -> list[Fact]:
        """The facts of one persona (or all), newest first."""
        where, params = ("WHERE persona = ?", [persona]) if persona else ("", [])
        rows = self._query(f"SELECT * FROM facts {where} ORDER BY created_at DESC, id DESC LIMIT ?",
                           [*params, limit or -1])
        return [_row_to_fact(row) for row in rows]

    # ---------------------------------------------------------------------------------------------
    # summaries
    # ---------------------------------------------------------------------------------------------

    def save_summary(self, persona: str, up_to_turn: int, text: str, created_at: float | None = None) -> int:
        """Store a rolling summary covering the persona's turns up to and including ``up_to_turn``."""
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO summaries (persona, up_to_turn, text, created_at) VALUES (?, ?, ?, ?)",
                (persona, up_to_turn, text, time.time() if created_at is None else created_at))
            return int(cursor.lastrowid or 0)

    def latest_summary(self, persona: str) -> Summary | None:
        rows = self._query("SELECT * FROM summaries WHERE persona = ? ORDER BY up_to_turn DESC, id DESC LIMIT 1",
                           (persona,))
        return _row_to_summary(rows[0]) if rows else None

    def summaries(self, persona: str | None = None) -> list[Summary]:
        where, params = ("WHERE persona = ?", [persona]) if persona else ("", [])
        rows = self._query(f"SELECT * FROM summaries {where} ORDER BY id", params)
        return [_row_to_summary(row) for row in rows]

    def turns_since_summary(self, persona: str, limit: int | None = None) -> list[Turn]:
        """The persona's turns after its latest summary, oldest first (the first ``limit`` of them)."""
        with self._lock:
            latest = self.latest_summary(persona)
            rows = self._query("SELECT * FROM turns WHERE persona = ? AND id > ? ORDER BY id LIMIT ?",
                               (persona, latest.up_to_turn if latest else 0, limit or -1))
        return [_row_to_turn(row) for row in rows]

    def count_since_summary(self, persona: str) -> int:
        with self._lock:
            latest = self.latest_summary(persona)
            row = self._query("SELECT COUNT(*) FROM turns WHERE persona = ? AND id > ?",
                              (persona, latest.up_to_turn if latest else 0))
        return int(row[0][0])

    # ---------------------------------------------------------------------------------------------
    # export, forget, stats
    # ---------------------------------------------------------------------------------------------

    def export_jsonl(self, file: str | Path | IO[str], persona: str | None = None) -> int:
        """Write every turn, fact and summary (of one persona or all) as JSON Lines; returns the line count."""
        if isinstance(file, str | Path):
            with open(file, "w", encoding="utf-8") as handle:
                return self.export_jsonl(handle, persona)
        where, params = ("WHERE persona = ?", [persona]) if persona else ("", [])
        count = 0
        with self._lock:
            # One read transaction: a consistent snapshot even while turns are being added.
            self._conn.execute("BEGIN")
            try:
                for table, convert in (("turns", _row_to_turn), ("facts", _row_to_fact),
                                       ("summaries", _row_to_summary)):
                    for row in self._conn.execute(f"SELECT * FROM {table} {where} ORDER BY id", params):
                        record: dict[str, Any] = {"record": _RECORD_NAMES[table]}
                        record.update(asdict(convert(row)))
                        for key in ("created_at", "ended_at"):
                            if key in record:
                                record[key] = iso_time(record[key])
                        file.write(json.dumps(record, ensure_ascii=False) + "\n")
                        count += 1
            finally:
                self._conn.execute("COMMIT")
        file.flush()
        return count

    def forget(self, persona: str | None = None, since: float | datetime | None = None,
               until: float | datetime | None = None, *, dry_run: bool = False) -> ForgetResult:
        """Delete turns, facts and summaries (of ``persona``, created in [since, until)); everything by default.

        A summary is a digest of everything before it, so every summary of a persona that may include a
        forgotten turn goes too (it is rewritten later from what remains). Facts learnt from a forgotten
        turn go with it. ``dry_run`` only counts.
        """
        start, end = to_timestamp(since), to_timestamp(until)
        conditions: list[str] = []
        params: list[Any] = []
        if persona is not None:
            conditions.append("persona = ?")
            params.append(persona)
        if start is not None:
            conditions.append("created_at >= ?")
            params.append(start)
        if end is not None:
            conditions.append("created_at < ?")
            params.append(end)
        where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
        with self._write() as conn:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS forget_turns (id INTEGER PRIMARY KEY, persona TEXT)")
            conn.execute("DELETE FROM temp.forget_turns")
            conn.execute(f"INSERT INTO temp.forget_turns SELECT id, persona FROM turns {where}", params)
            turns = conn.execute("SELECT COUNT(*) FROM temp.forget_turns").fetchone()[0]
            fact_ids = {row[0] for row in conn.execute(f"SELECT id FROM facts {where}", params)}
            fact_ids |= {row[0] for row in conn.execute(
                "SELECT id FROM facts WHERE source_turn IN (SELECT id FROM temp.forget_turns)")}
            summary_ids = {row[0] for row in conn.execute(f"SELECT id FROM summaries {where}", params)}
            summary_ids |= {row[0] for row in conn.execute(
                "SELECT s.id FROM summaries AS s JOIN (SELECT persona, MIN(id) AS first FROM temp.forget_turns "
                "GROUP BY persona) AS f ON s.persona = f.persona AND s.up_to_turn >= f.first")}
            if not dry_run:
                conn.execute("DELETE FROM turns WHERE id IN (SELECT id FROM temp.forget_turns)")
                for table, ids in (("facts", fact_ids), ("summaries", summary_ids)):
                    conn.executemany(f"DELETE FROM {table} WHERE id = ?", [(row_id,) for row_id in ids])
                if self.has_fts and (turns or fact_ids):
                    # Merge the index so the forgotten text's trigrams leave it too (not just marked deleted).
                    for fts, _content in _FTS_TABLES:
                        conn.execute(f"INSERT INTO {fts} ({fts}) VALUES ('optimize')")
            conn.execute("DELETE FROM temp.forget_turns")
        result = ForgetResult(turns=int(turns), facts=len(fact_ids), summaries=len(summary_ids))
        if not dry_run and result.total:
            # Move the deleted pages out of the WAL file too.
            with self._lock:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return result

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` plus the FTS indexes' own check: ``ok`` when all is well."""
        with self._lock:
            problems = [row[0] for row in self._conn.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                return "; ".join(problems)
            if self.has_fts:
                for fts, _content in _FTS_TABLES:
                    try:
                        self._conn.execute(f"INSERT INTO {fts} ({fts}) VALUES ('integrity-check')")
                    except sqlite3.DatabaseError as exc:
                        return f"{fts}: {exc}"
        return "ok"

    def stats(self) -> dict[str, Any]:
        """Counts per persona, time span, size on disk, schema version and search mode."""
        with self._lock:
            per_persona = {row[0]: int(row[1]) for row in self._query(
                "SELECT persona, COUNT(*) FROM turns GROUP BY persona ORDER BY persona")}
            first, last = self._query("SELECT MIN(created_at), MAX(created_at) FROM turns")[0]
            facts = int(self._query("SELECT COUNT(*) FROM facts")[0][0])
            summaries = int(self._query("SELECT COUNT(*) FROM summaries")[0][0])
            version = schema_version(self._conn)
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return {
            "path": str(self.path),
            "schema_version": version,
            "turns": sum(per_persona.values()),
            "turns_by_persona": per_persona,
            "facts": facts,
            "summaries": summaries,
            "first_turn_at": iso_time(first),
            "last_turn_at": iso_time(last),
            "size_bytes": size,
            "search": "fts5-trigram" if self.has_fts else "like",
        }
