"""Backups: config/ and the memory database (SQLite's online backup API) in one timestamped archive, and a
restore that validates the archive before it replaces anything and keeps what it replaced."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from assistant.config.loader import Settings, load_settings
from assistant.errors import BadInputError, ConfigError, SaijinError

FORMAT = "saijin-backup/1"
DATABASE_NAME = "memory.db"


def database_path(settings: Settings) -> Path:
    return settings.data_path(settings.assistant.memory.database)


def backups_dir(settings: Settings) -> Path:
    return settings.data_dir / "backups"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshot_database(source: Path, target: Path) -> None:
    """Copy a live SQLite database (WAL and all) consistently, while others may be writing to it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            # One step: a single read transaction, so the copy is one consistent moment even while the
            # assistant keeps writing (in WAL mode writers do not wait for it; stepwise copies would restart).
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file in the archive
        finally:
            dst.close()
    finally:
        src.close()


def integrity_problem(path: Path) -> str | None:
    """None when ``PRAGMA integrity_check`` says ok, else what it says."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("PRAGMA integrity_check").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    result = "; ".join(str(r[0]) for r in rows)
    return None if result == "ok" else result


def create_backup(settings: Settings, output_dir: Path | None = None) -> Path:
    """Write ``saijin-backup-YYYYmmdd-HHMMSS.tar.gz`` (config/ + the memory database + a manifest)."""
    output_dir = output_dir or backups_dir(settings)
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    archive = output_dir / f"saijin-backup-{stamp}.tar.gz"
    counter = 1
    while archive.exists():
        counter += 1
        archive = output_dir / f"saijin-backup-{stamp}-{counter}.tar.gz"
    database = database_path(settings)
    with tempfile.TemporaryDirectory(prefix="saijin-backup-") as tmp:
        staging = Path(tmp)
        files: dict[str, str] = {}
        config_files = [p for p in sorted(settings.config_dir.rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
        if database.is_file():
            snapshot_database(database, staging / DATABASE_NAME)
            files[DATABASE_NAME] = _sha256(staging / DATABASE_NAME)
        for path in config_files:
            files[f"config/{path.relative_to(settings.config_dir).as_posix()}"] = _sha256(path)
        manifest = {"format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "profile": settings.profile,
                    "config_dir": str(settings.config_dir), "database": str(database),
                    "has_database": database.is_file(), "files": files}
        (staging / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
        partial = archive.with_suffix(".partial")
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(staging / "manifest.json", arcname="manifest.json")
            if database.is_file():
                tar.add(staging / DATABASE_NAME, arcname=DATABASE_NAME)
            for path in config_files:
                tar.add(path, arcname=f"config/{path.relative_to(settings.config_dir).as_posix()}")
        partial.replace(archive)
    return archive


@dataclass
class RestoreResult:
    archive: Path
    #: Where the replaced config folder and database were kept.
    kept: Path
    restored_database: bool
    config_files: int


def _safe_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    members = []
    for member in tar.getmembers():
        name = PurePosixPath(member.name)
        if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
            raise BadInputError(f"{archive}: unsafe entry {member.name!r} — not a Saijin backup")
        if name.parts[0] not in ("manifest.json", DATABASE_NAME, "config"):
            raise BadInputError(f"{archive}: unexpected entry {member.name!r} — not a Saijin backup")
        members.append(member)
    return members


def validate_backup(archive: Path, into: Path, profile: str | None = None) -> dict[str, object]:
    """Unpack ``archive`` into ``into`` and check it: manifest, checksums, database integrity, config loads.
    Returns the manifest; raises BadInputError naming the problem."""
    if not archive.is_file():
        raise BadInputError(f"{archive}: no such backup file")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _safe_members(tar, archive)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(into, members=members, filter="data")
            else:  # Python < 3.11.4: the members were checked above
                tar.extractall(into, members=members)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BadInputError(f"{archive}: cannot read the archive ({exc}) — is it a `saijin backup` file?") from None
    try:
        manifest = json.loads((into / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise BadInputError(f"{archive}: manifest.json is missing or broken — not a Saijin backup") from None
    if manifest.get("format") != FORMAT:
        raise BadInputError(f"{archive}: unknown backup format {manifest.get('format')!r}")
    for name, digest in (manifest.get("files") or {}).items():
        path = into / name
        if not path.is_file():
            raise BadInputError(f"{archive}: {name} is listed in the manifest but missing")
        if _sha256(path) != digest:
            raise BadInputError(f"{archive}: {name} is damaged (checksum mismatch)")
    if manifest.get("has_database"):
        problem = integrity_problem(into / DATABASE_NAME)
        if problem:
            raise BadInputError(f"{archive}: the memory database fails its integrity check ({problem})")
    try:
        load_settings(into / "config", profile or manifest.get("profile") or None)
    except ConfigError as exc:
        raise BadInputError(f"{archive}: its config does not load: {exc}") from None
    return manifest


@dataclass
class RestoreTarget:
    """Where a restore writes: the config folder, the memory database, where replaced files are kept."""

    config_dir: Path
    database: Path
    backups_dir: Path
    profile: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RestoreTarget:
        return cls(settings.config_dir, database_path(settings), backups_dir(settings), settings.profile)

    @classmethod
    def from_config_dir(cls, config_dir: Path) -> RestoreTarget:
        """For a config folder that does not load (what restores are for): the default locations, or the
        data_dir and memory.database that assistant.yaml still names."""
        data_dir, database = "data", "data/memory.db"
        try:
            raw = yaml.safe_load((config_dir / "assistant.yaml").read_text(encoding="utf-8"))
            if isinstance(raw, dict):
                data_dir = str(raw.get("data_dir") or data_dir)
                memory = raw.get("memory")
                if isinstance(memory, dict) and memory.get("database"):
                    database = str(memory["database"])
        except (OSError, yaml.YAMLError):
            pass

        def under_project(value: str) -> Path:
            path = Path(value).expanduser()
            return path if path.is_absolute() else (config_dir.parent / path).resolve()

        return cls(config_dir, under_project(database), under_project(data_dir) / "backups")


def restore_backup(target: Settings | RestoreTarget, archive: Path) -> RestoreResult:
    """Validate ``archive``, then put its config/ and database in place; the replaced ones are kept in
    data/backups/replaced-<timestamp>/."""
    if isinstance(target, Settings):
        target = RestoreTarget.from_settings(target)
    database, config_dir = target.database, target.config_dir
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = target.backups_dir / f"replaced-{stamp}"
    counter = 1
    while kept.exists():
        counter += 1
        kept = target.backups_dir / f"replaced-{stamp}-{counter}"
    config_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="saijin-restore-", dir=config_dir.parent) as tmp:
        staging = Path(tmp)
        manifest = validate_backup(archive, staging, target.profile)
        kept.mkdir(parents=True)
        # Database first (through SQLite, so a running assistant's connections stay valid), then config.
        restored_db = bool(manifest.get("has_database"))
        if restored_db:
            if database.is_file():
                snapshot_database(database, kept / DATABASE_NAME)
            _restore_database(staging / DATABASE_NAME, database)
        restored_config = staging / "config"
        files = sum(1 for p in restored_config.rglob("*") if p.is_file())
        incoming = config_dir.parent / f".{config_dir.name}.restoring-{stamp}"
        shutil.copytree(restored_config, incoming)
        if config_dir.exists():
            shutil.move(str(config_dir), str(kept / "config"))
        incoming.rename(config_dir)
    return RestoreResult(archive, kept, restored_db, files)


def _restore_database(source: Path, target: Path) -> None:
    """Copy ``source`` over the live database ``target`` with the backup API (waits for writers, atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target, timeout=30)
        try:
            src.backup(dst)
        except sqlite3.Error as exc:
            raise SaijinError(f"cannot write {target} ({exc}) — stop the assistant and run the restore again") from None
        finally:
            dst.close()
    finally:
        src.close()
