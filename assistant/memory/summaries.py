"""Rolling per-persona summaries, written in the background every N turns by a summarising callable (the LLM).

A summary records the last turn it covers (``up_to_turn``): the turns it was given, never the turns that
arrived while it was being written. Those stay "since the summary" and go into the next one, so a summary
saved while turns are being added loses nothing.

The callable is a ``SummarizeFn``; ``assistant/llm/summary.py`` makes one that asks a chat engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from assistant.memory.store import MemoryStore, Turn

log = logging.getLogger(__name__)

#: (persona, turns to fold in, the previous summary or None) -> the new summary.
SummarizeFn = Callable[[str, list[Turn], str | None], Awaitable[str]]

class Summarizer:
    """Starts a background summary for a persona once ``every_n`` turns have gathered since its last one."""

    def __init__(self, store: MemoryStore, summarize: SummarizeFn, every_n: int, *,
                 max_batch: int | None = None) -> None:
        if every_n < 1:
            raise ValueError(f"every_n must be at least 1 (got {every_n})")
        self._store = store
        self._summarize = summarize
        self.every_n = every_n
        #: A long backlog (e.g. the first summary of an old history) is folded in chunks of this many turns.
        self.max_batch = max_batch or max(4 * every_n, 50)
        self._tasks: dict[str, asyncio.Task[int | None]] = {}

    def maybe_schedule(self, persona: str) -> asyncio.Task[int | None] | None:
        """Start a background summary of ``persona`` if none is running; returns at once.

        The task checks whether ``every_n`` turns have gathered and, if so, writes one summary; it
        resolves to the new summary's id or None. Failures are logged, never raised into the turn.
        """
        running = self._tasks.get(persona)
        if running is not None and not running.done():
            return None
        task = asyncio.get_running_loop().create_task(self._summarize_if_due(persona), name=f"summary:{persona}")
        self._tasks[persona] = task
        task.add_done_callback(self._finished)
        return task

    @property
    def is_busy(self) -> bool:
        return any(not task.done() for task in self._tasks.values())

    async def wait(self) -> None:
        """Wait for the summaries in progress (e.g. before a clean exit)."""
        tasks = [task for task in self._tasks.values() if not task.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def cancel(self) -> None:
        """Stop the summaries in progress at once (e.g. when a reply needs the same local engine).

        Nothing half-written is saved; the summary is tried again after the next turn.
        """
        for task in self._tasks.values():
            if not task.done():
                task.cancel()

    async def aclose(self) -> None:
        """Cancel the summaries in progress; nothing half-written is saved."""
        tasks = [task for task in self._tasks.values() if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def _summarize_if_due(self, persona: str) -> int | None:
        pending = await asyncio.to_thread(self._store.count_since_summary, persona)
        if pending < self.every_n:
            return None
        turns = await asyncio.to_thread(self._store.turns_since_summary, persona, self.max_batch)
        if not turns:
            return None
        previous = await asyncio.to_thread(self._store.latest_summary, persona)
        try:
            text = (await self._summarize(persona, turns, previous.text if previous else None)).strip()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("memory: the summary for %s failed (%s: %s); it is tried again after the next turn",
                        persona, type(exc).__name__, exc)
            log.debug("summary failure", exc_info=True)
            return None
        if not text:
            log.warning("memory: the summary for %s came back empty; it is tried again after the next turn", persona)
            return None
        summary_id = await asyncio.to_thread(self._store.save_summary, persona, turns[-1].id, text)
        log.info("memory: summary %d for %s covers turns up to %d", summary_id, persona, turns[-1].id)
        return summary_id

    def _finished(self, task: asyncio.Task[int | None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.warning("memory: the summary task failed: %s: %s", type(exc).__name__, exc)
