"""Routing: which engine answers a persona, and falling back to the next engine when one is down.

An engine that fails before its first token is skipped for this turn and the next in the fallback order
answers; the user is told once per outage. Every turn tries the persona's own engine first again, so an
engine that comes back is used without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Protocol

from assistant.config.schema import EngineConfig, PersonaConfig, RoutingConfig
from assistant.errors import EngineUnavailable, ModelMissing, SaijinError
from assistant.llm.engine import ChatEngine, ChatMessage

log = logging.getLogger(__name__)

#: How long a turn waits for a resident engine that is not up before the fallback answers.
RESIDENT_WAIT_S = 2.0


class EngineStarter(Protocol):
    """Starts on-demand engines (assistant.ops.manager.EngineManager implements it)."""

    async def ensure_ready(self, engine_name: str, on_starting: Callable[[], None] | None = None) -> None: ...

    def touch(self, engine_name: str) -> None: ...

    def report_failure(self, engine_name: str) -> None: ...


def make_engine(name: str, config: EngineConfig, base_dir: Path | None = None) -> ChatEngine:
    """The backend for an engine's kind (imported lazily)."""
    if config.kind == "embedded":
        from assistant.llm.embedded import EmbeddedEngine

        return EmbeddedEngine(name, config, base_dir)
    from assistant.llm.openai_engine import OpenAIEngine

    return OpenAIEngine(name, config)


def override_routing(url: str, model: str | None) -> RoutingConfig:
    """`--llm-url/--llm-model`: one OpenAI-compatible engine answers every persona."""
    engine = EngineConfig(kind="openai", base_url=url, model=model or "default", resident=True)
    return RoutingConfig(default="cli", engines={"cli": engine}, fallback=[])


class EngineRouter:
    """Streams a persona's reply from its engine, or from the fallback engines when it is down."""

    def __init__(self, routing: RoutingConfig, base_dir: Path | None = None,
                 factory: Callable[[str, EngineConfig, Path | None], ChatEngine] = make_engine,
                 starter: EngineStarter | None = None) -> None:
        self.routing = routing
        self._base_dir = base_dir
        self._factory = factory
        self._starter = starter
        self._engines: dict[str, ChatEngine] = {}
        self._down: set[str] = set()
        self._starting: dict[str, asyncio.Task[None]] = {}

    def engine(self, name: str) -> ChatEngine:
        if name not in self._engines:
            self._engines[name] = self._factory(name, self.routing.engines[name], self._base_dir)
        return self._engines[name]

    def chain(self, persona: PersonaConfig) -> list[str]:
        return self.routing.chain_for(persona.id, persona.engine)

    async def stream(self, persona: PersonaConfig, messages: list[ChatMessage],
                     notify: Callable[[str], None] | None = None,
                     on_starting: Callable[[], Awaitable[None] | None] | None = None) -> AsyncGenerator[str, None]:
        """Yield the reply from the first engine that answers. ``notify`` hears fallback notices (once per
        outage); errors after the first token propagate, since the user has heard part of that reply."""
        failures: list[str] = []
        chain = self.chain(persona)
        for position, name in enumerate(chain):
            config = self.routing.engines[name]
            engine = self.engine(name)
            try:
                if self._starter is not None:
                    has_fallback = position < len(chain) - 1
                    await self._prepare(name, config, has_fallback, on_starting)
                pieces = engine.stream(messages, config.generation)
                try:
                    first = await anext(pieces)
                except StopAsyncIteration:
                    first = ""
            except (EngineUnavailable, ModelMissing, SaijinError) as exc:
                log.info("engine %s failed before its first token: %s", name, exc)
                failures.append(str(exc))
                if self._starter is not None:
                    self._starter.report_failure(name)
                if name not in self._down:
                    self._down.add(name)
                    if notify is not None and len(self.chain(persona)) > 1:
                        notify(f"{name} is not answering; trying the next engine ({exc})")
                continue
            if name in self._down:
                log.info("engine %s answers again", name)
                self._down.discard(name)
            if self._starter is not None:
                self._starter.touch(name)
            if first:
                yield first
            try:
                async for piece in pieces:
                    yield piece
            finally:
                await pieces.aclose()
            return
        raise EngineUnavailable(failures[-1] if len(failures) == 1 else
                                f"no engine answered: {' / '.join(failures)}")

    async def _prepare(self, name: str, config: EngineConfig, has_fallback: bool,
                       on_starting: Callable[[], Awaitable[None] | None] | None) -> None:
        """Have the manager make the engine ready. An on-demand engine is waited for (the persona says its
        「ちょっと待ってね」); a resident engine that is down is started in the background while the next
        engine answers this turn, so nobody waits minutes for a model to load."""
        assert self._starter is not None
        if not (config.resident and has_fallback):
            await self._starter.ensure_ready(name, on_starting)  # type: ignore[arg-type]
            return
        task = self._starting.get(name)
        if task is None or task.done():
            task = asyncio.ensure_future(self._starter.ensure_ready(name, None))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: never "never retrieved"
            self._starting[name] = task
        done, _ = await asyncio.wait({task}, timeout=RESIDENT_WAIT_S)
        if not done:
            raise EngineUnavailable(f"{name} is starting; the next engine answers meanwhile")
        task.result()

    async def aclose(self) -> None:
        for task in self._starting.values():
            task.cancel()
        for engine in self._engines.values():
            try:
                await engine.aclose()
            except Exception:
                log.debug("closing engine %s failed", engine.name, exc_info=True)
        self._engines.clear()
