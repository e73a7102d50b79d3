"""The stage contract: a stage receives the event types it accepts and yields the events it produces.

A stage does one job and knows nothing of the others. It gets a :class:`StageContext` when the pipeline
starts it: the way to emit events outside ``process`` (from a background loop), to start tasks that
belong to a turn (cancelled with it), and to ask whether a turn is still alive. ``timing`` makes the
``StageTiming`` a stage reports; ``run_stage`` runs one stage alone (how stages are tested).

This module sits at the bottom of the package, beside ``events.py``: every stage imports it, and it
imports nothing of the stages. ``assistant/pipeline/`` runs stages (``runtime.py``) and wires them
(``assemble.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import Any, ClassVar, Protocol

from assistant.events import Event, StageTiming, now


class StageContext(Protocol):
    """What the pipeline offers a running stage."""

    def emit(self, event: Event) -> None:
        """Send an event on (to the stages that accept it and to the bus)."""

    def cancel_turn(self, turn_id: int, reason: str = "") -> None:
        """Cancel a turn: its in-flight work stops and its pending events are dropped everywhere."""

    def is_cancelled(self, turn_id: int | None) -> bool:
        """True for a turn that was cancelled."""

    def spawn(self, coro: Coroutine[Any, Any, Any], turn_id: int | None = None) -> asyncio.Task[Any]:
        """Start an owned task; it is cancelled on shutdown, and with its turn when it has one."""


class Stage:
    """Base of every stage. Subclasses set ``accepts`` and implement ``process`` (and maybe ``run``)."""

    #: The event types delivered to ``process``, in order, one at a time.
    accepts: ClassVar[tuple[type[Event], ...]] = ()
    #: Urgent event types delivered at once to ``on_urgent`` (they overtake queued events).
    urgent: ClassVar[tuple[type[Event], ...]] = ()

    def __init__(self) -> None:
        self.ctx: StageContext | None = None

    @property
    def name(self) -> str:
        return type(self).__name__

    async def start(self, ctx: StageContext) -> None:
        """Called once before any event; load models here (off the event loop)."""
        self.ctx = ctx

    async def run(self) -> None:
        """An optional background loop (sources, timers). Returns when it has nothing more to do."""

    async def process(self, event: Event) -> AsyncIterator[Event]:
        """Handle one accepted event; yield what it produces."""
        return
        yield  # pragma: no cover - makes this an async generator

    def on_urgent(self, event: Event) -> None:
        """Handle an urgent event at once (it must not block)."""

    async def stop(self) -> None:
        """Called once at shutdown; release devices and models."""

    def emit(self, event: Event) -> None:
        if self.ctx is not None:
            self.ctx.emit(event)


def timing(turn_id: int, stage: str, started_at: float, ended_at: float | None = None) -> StageTiming:
    """A StageTiming event ending now (or at ``ended_at``)."""
    return StageTiming(turn_id=turn_id, stage=stage, started_at=started_at,
                       ended_at=now() if ended_at is None else ended_at)


class _TestContext:
    """A context for :func:`run_stage`: collects what the stage emits outside ``process``."""

    def __init__(self) -> None:
        self.emitted: list[Event] = []
        self.cancelled: set[int] = set()
        self.tasks: set[asyncio.Task[Any]] = set()

    def emit(self, event: Event) -> None:
        self.emitted.append(event)

    def cancel_turn(self, turn_id: int, reason: str = "") -> None:
        self.cancelled.add(turn_id)

    def is_cancelled(self, turn_id: int | None) -> bool:
        return turn_id is not None and turn_id in self.cancelled

    def spawn(self, coro: Coroutine[Any, Any, Any], turn_id: int | None = None) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


async def run_stage(stage: Stage, events: Iterable[Event],
                    between: Callable[[Event], Awaitable[None]] | None = None) -> list[Event]:
    """Feed events to one stage (started and stopped here) and return everything it produced, in order.

    This is how stages are tested alone: feed events, look at what comes out.
    """
    ctx = _TestContext()
    await stage.start(ctx)
    out: list[Event] = []
    try:
        for event in events:
            if isinstance(event, stage.urgent):
                stage.on_urgent(event)
            elif isinstance(event, stage.accepts):
                async for produced in stage.process(event):
                    out.append(produced)
            out.extend(ctx.emitted)
            ctx.emitted.clear()
            if between is not None:
                await between(event)
        while ctx.tasks:
            await asyncio.gather(*tuple(ctx.tasks), return_exceptions=True)
        out.extend(ctx.emitted)
    finally:
        await stage.stop()
    return out
