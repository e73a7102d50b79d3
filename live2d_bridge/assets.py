"""The files the bridge serves: the page itself, the Live2D libraries and each persona's Live2D model.

Nothing proprietary ships with Saijin: pixi.js, pixi-live2d-display, the Cubism Core and the models come from
paths or URLs the user gives (or a node_modules folder installed beside the project). A local file is served
under a fixed URL; an http(s) URL is handed to the page as it is.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from assistant.config.schema import PersonaConfig

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: node_modules-relative places of the two libraries Live2D mode needs.
PIXI_IN_NODE_MODULES = "pixi.js/dist/browser/pixi.min.js"
DISPLAY_IN_NODE_MODULES = "pixi-live2d-display/dist/cubism4.min.js"

PIXI_URL = "/vendor/pixi.min.js"
DISPLAY_URL = "/vendor/cubism4.min.js"

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".wasm": "application/wasm",
    ".moc3": "application/octet-stream",
}


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def default_node_modules() -> list[Path]:
    """Where Live2D libraries are looked for when the config names none."""
    return [PROJECT_ROOT / "node_modules", PROJECT_ROOT / ".cache" / "npm" / "node_modules"]


@dataclass(frozen=True)
class Live2DPaths:
    """pixi.js 6 and pixi-live2d-display 0.4 (cubism4 build): a local file or an http(s) URL each, or None."""

    pixi: str | None = None
    display: str | None = None

    @property
    def is_available(self) -> bool:
        return bool(self.pixi and self.display)

    @classmethod
    def find(cls, pixi: str | None = None, display: str | None = None, base_dir: Path | None = None,
             node_modules: Iterable[Path] | None = None) -> Live2DPaths:
        """Use the given paths/URLs (relative to ``base_dir``), else look in node_modules folders."""
        folders = list(node_modules) if node_modules is not None else default_node_modules()

        def pick(given: str | None, inside: str) -> str | None:
            if given:
                return given if is_url(given) else str(_resolve(given, base_dir))
            for folder in folders:
                candidate = Path(folder) / inside
                if candidate.is_file():
                    return str(candidate)
            return None

        return cls(pixi=pick(pixi, PIXI_IN_NODE_MODULES), display=pick(display, DISPLAY_IN_NODE_MODULES))

    @classmethod
    def from_node_modules(cls, folder: Path) -> Live2DPaths:
        return cls.find(node_modules=[folder])

    def urls(self) -> dict[str, str | None]:
        """What the page loads: the fixed local URL for a file, the URL itself for a URL."""
        def url(value: str | None, local: str) -> str | None:
            if not value:
                return None
            return value if is_url(value) else local
        return {"pixi": url(self.pixi, PIXI_URL), "display": url(self.display, DISPLAY_URL)}


def _resolve(value: str, base_dir: Path | None) -> Path:
    path = Path(os.path.expanduser(value))
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path.absolute()


@dataclass
class _PersonaModel:
    core: str | None = None            # local path or URL
    model: str | None = None           # local path or URL of the .model3.json
    scale: float = 1.0


@dataclass
class SiteFiles:
    """Maps request paths to local files, and says which URLs the page should load for Live2D."""

    web_dir: Path = WEB_DIR
    live2d: Live2DPaths = field(default_factory=Live2DPaths)
    base_dir: Path | None = None
    personas: Sequence[PersonaConfig] = ()

    def __post_init__(self) -> None:
        self.web_dir = Path(self.web_dir).resolve()
        self._models: dict[str, _PersonaModel] = {}
        for persona in self.personas:
            cfg = persona.avatar.live2d
            entry = _PersonaModel(scale=cfg.scale)
            if cfg.core_script:
                entry.core = cfg.core_script if is_url(cfg.core_script) else str(_resolve(cfg.core_script, self.base_dir))
            if cfg.model:
                entry.model = cfg.model if is_url(cfg.model) else str(_resolve(cfg.model, self.base_dir))
            for value in (entry.core, entry.model):
                if value and not is_url(value) and not Path(value).is_file():
                    log.warning("persona %s: Live2D file %s not found — the page will show the built-in avatar",
                                persona.id, value)
            self._models[persona.id] = entry
        for value in (self.live2d.pixi, self.live2d.display):
            if value and not is_url(value) and not Path(value).is_file():
                log.warning("Live2D library %s not found — Live2D personas will show the built-in avatar", value)

    def persona_live2d(self, persona_id: str) -> dict[str, Any]:
        """The ``live2d`` entry of a persona in ``hello``: URLs the page loads (null when not configured)."""
        entry = self._models.get(persona_id, _PersonaModel())
        core = model = None
        if entry.core:
            core = entry.core if is_url(entry.core) else f"/live2d/{quote(persona_id)}/core.js"
        if entry.model:
            model = entry.model if is_url(entry.model) else \
                f"/live2d/{quote(persona_id)}/model/{quote(Path(entry.model).name)}"
        return {"core_script": core, "model": model, "scale": entry.scale}

    def lookup(self, request_path: str) -> Path | None:
        """The local file for a request path (query removed), or None. Never leaves the folders it serves."""
        path = unquote(request_path.split("?", 1)[0].split("#", 1)[0])
        if "\x00" in path or "\\" in path:
            return None
        if path in ("", "/"):
            path = "/index.html"
        if path == PIXI_URL:
            return _local_file(self.live2d.pixi)
        if path == DISPLAY_URL:
            return _local_file(self.live2d.display)
        if path.startswith("/live2d/"):
            return self._live2d_file(path[len("/live2d/"):])
        return _inside(self.web_dir, path.lstrip("/"))

    def _live2d_file(self, rest: str) -> Path | None:
        persona_id, _, tail = rest.partition("/")
        entry = self._models.get(persona_id)
        if entry is None:
            return None
        if tail == "core.js":
            return _local_file(entry.core)
        if tail.startswith("model/") and entry.model and not is_url(entry.model):
            return _inside(Path(entry.model).parent, tail[len("model/"):])
        return None


def _local_file(value: str | None) -> Path | None:
    if not value or is_url(value):
        return None
    path = Path(value)
    return path if path.is_file() else None


def _inside(folder: Path, relative: str) -> Path | None:
    """``folder/relative`` if it names a file lexically inside ``folder`` (no .., no absolute paths)."""
    if not relative:
        return None
    clean = posixpath.normpath(relative)
    if clean.startswith(("/", "..")) or clean == "." or any(part.startswith(".") for part in clean.split("/")):
        return None
    candidate = folder / clean
    return candidate if candidate.is_file() else None


def content_type(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _TYPES:
        return _TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"
