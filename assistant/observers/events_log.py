"""The events log (`--events FILE`): every outward event as one JSON line, as the page receives it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from assistant.errors import UsageError
from assistant.events import Audio, Event


class EventsLog:
    """Writes each non-internal event as a JSON line (audio events carry their mouth values, not the WAV)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: TextIO | None = self.path.open("w", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--events {path}: cannot write there ({exc.strerror})") from None

    def __call__(self, event: Event) -> None:
        if self._file is None or event.internal:
            return
        data = event.to_dict(include_audio=False)
        if isinstance(event, Audio):
            data["duration_s"] = round(event.duration_s, 3)
        self._file.write(json.dumps(data, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
