"""What the assistant remembers between starts besides the conversation: the last persona and mode.

Kept as a small JSON file (``<data_dir>/state.json``), written atomically (a temporary file in the same
folder, flushed and fsynced, then ``os.replace``), so a crash leaves the old file or the new one, never half.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


class AppState:
    """The last persona and mode (and when the mode was set), loaded from and saved to ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.persona: str | None = None
        self.mode: str | None = None
        #: Seconds since the epoch when ``mode`` was set.
        self.mode_set_at: float | None = None
        self._other: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def in_data_dir(cls, data_dir: str | os.PathLike[str]) -> AppState:
        """The state file of a data folder (``settings.data_dir``), loaded."""
        return cls(Path(data_dir) / STATE_FILE).load()

    def load(self) -> AppState:
        """Read the file; a missing file means nothing remembered, an unreadable one is set aside with a warning."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return self
        except OSError as exc:
            log.warning("%s: cannot read the saved state (%s); starting from the config defaults", self.path,
                        exc.strerror)
            return self
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            aside = self.path.with_name(self.path.name + ".bad")
            log.warning("%s: the saved state is damaged (%s); moved to %s, starting from the config defaults",
                        self.path, exc, aside.name)
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            return self
        self.persona = _str_or_none(data.pop("persona", None))
        self.mode = _str_or_none(data.pop("mode", None))
        stamp = data.pop("mode_set_at", None)
        self.mode_set_at = float(stamp) if isinstance(stamp, int | float) else None
        # Keys written by a newer Saijin are kept as they are.
        self._other = data
        return self

    def to_dict(self) -> dict[str, Any]:
        return {**self._other, "persona": self.persona, "mode": self.mode, "mode_set_at": self.mode_set_at}

    def save(self) -> None:
        """Write the file atomically."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            payload = json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n"
            handle, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as file:
                    file.write(payload)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temp, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
                raise
            _fsync_dir(self.path.parent)

    def set_persona(self, persona: str) -> None:
        """Remember ``persona`` as the last one chosen, and save."""
        self.persona = persona
        self.save()

    def set_mode(self, mode: str, at: float | None = None) -> None:
        """Remember ``mode`` (and when it was set), and save."""
        self.mode = mode
        self.mode_set_at = time.time() if at is None else at
        self.save()


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _fsync_dir(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
