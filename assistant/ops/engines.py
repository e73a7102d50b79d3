"""Which engines a configuration uses, and whether each one answers (health and the models it lists)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import httpx

from assistant.config.loader import Settings
from assistant.config.schema import EngineConfig

ProbeState = Literal["up", "loading", "down"]


def engines_in_use(settings: Settings) -> list[str]:
    """Engines the assistant may talk to: the default, the persona mappings and personas' own engines,
    and the fallback chain (in that order, each once). Others in routing.yaml are only launched by hand."""
    routing = settings.routing
    names = [routing.default, *routing.personas.values()]
    names += [p.engine for p in settings.personas.values() if p.engine and p.id not in routing.personas]
    names += routing.fallback
    seen: list[str] = []
    for name in names:
        if name and name in routing.engines and name not in seen:
            seen.append(name)
    return seen


def server_root(base_url: str) -> str:
    """http://host:port/v1 -> http://host:port (where /health and Ollama's /api live)."""
    root = base_url.rstrip("/")
    return root.removesuffix("/v1")


@dataclass
class EngineProbe:
    """What an engine's server said: up (healthy and listing models), loading, or down (with why)."""

    state: ProbeState
    models: list[str] = field(default_factory=list)
    detail: str = ""

    def lists(self, model: str) -> bool:
        return model in self.models


def _interpret(kind: str, health: httpx.Response | None, models: httpx.Response | None, error: str) -> EngineProbe:
    if models is not None and models.status_code == 200:
        try:
            listed = [str(item.get("id")) for item in models.json().get("data", [])]
        except (ValueError, AttributeError):
            listed = []
        if kind == "vllm" and health is not None and health.status_code != 200:
            return EngineProbe("loading", listed, f"/health answered {health.status_code}")
        return EngineProbe("up", listed)
    if health is not None or models is not None:
        code = (models or health).status_code  # type: ignore[union-attr]
        return EngineProbe("loading", [], f"answered HTTP {code}")
    return EngineProbe("down", [], error)


def probe_engine(engine: EngineConfig, timeout: float = 2.0) -> EngineProbe:
    """Ask a server engine for /health (vLLM) and /models, with a short timeout."""
    if not engine.base_url:
        return EngineProbe("down", [], "no base_url")
    base = engine.base_url.rstrip("/")
    health = models = None
    error = ""
    headers = {"Authorization": f"Bearer {engine.api_key}"}
    with httpx.Client(timeout=timeout, headers=headers, trust_env=False) as client:
        try:
            if engine.kind == "vllm":
                health = client.get(f"{server_root(base)}/health")
            models = client.get(f"{base}/models")
        except httpx.HTTPError as exc:
            error = _describe(exc)
    return _interpret(engine.kind, health, models, error)


async def probe_engine_async(engine: EngineConfig, timeout: float = 2.0) -> EngineProbe:
    """The async twin of :func:`probe_engine`."""
    if not engine.base_url:
        return EngineProbe("down", [], "no base_url")
    base = engine.base_url.rstrip("/")
    health = models = None
    error = ""
    headers = {"Authorization": f"Bearer {engine.api_key}"}
    async with httpx.AsyncClient(timeout=timeout, headers=headers, trust_env=False) as client:
        try:
            if engine.kind == "vllm":
                health = await client.get(f"{server_root(base)}/health")
            models = await client.get(f"{base}/models")
        except httpx.HTTPError as exc:
            error = _describe(exc)
    return _interpret(engine.kind, health, models, error)


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return type(exc).__name__
