"""The machinery that runs stages: one inbox and worker per stage, typed delivery, turn cancellation.

An emitted event goes to the bus and to the inbox of every *other* stage that accepts its type, in emit
order. Urgent event types overtake the inboxes. Cancelling a turn cancels the work each stage is doing
for it (an LLM stream is closed by that cancellation), and drops its events wherever they wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import Any

from assistant.errors import SaijinError
from assistant.events import Error, Event, Interrupted, PlaybackFinished
from assistant.pipeline.bus import Bus
from assistant.stage import Stage

log = logging.getLogger(__name__)

#: Events of a cancelled turn that still travel: they report what happened (the cut, how much was heard).
REPORTS_AFTER_CANCEL = (Interrupted, Error, PlaybackFinished)


class _Slot:
    """One stage's inbox, worker and in-flight state."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.current: asyncio.Task[None] | None = None
        self.current_turn: int | None = None


class _Context:
    """The StageContext handed to one stage."""

    def __init__(self, pipeline: Pipeline, slot: _Slot) -> None:
        self._pipeline = pipeline
        self._slot = slot

    def emit(self, event: Event) -> None:
        self._pipeline.emit(event, origin=self._slot)

    def cancel_turn(self, turn_id: int, reason: str = "") -> None:
        self._pipeline.cancel_turn(turn_id, reason)

    def is_cancelled(self, turn_id: int | None) -> bool:
        return self._pipeline.is_cancelled(turn_id)

    def spawn(self, coro: Coroutine[Any, Any, Any], turn_id: int | None = None) -> asyncio.Task[Any]:
        return self._pipeline.spawn(coro, turn_id, owner=self._slot.stage.name)


class Pipeline:
    """Runs a set of stages. Use ``async with Pipeline(stages, bus) as p:`` then ``p.emit(...)``."""

    def __init__(self, stages: Sequence[Stage], bus: Bus | None = None) -> None:
        self.bus = bus or Bus()
        self._slots = [_Slot(stage) for stage in stages]
        self._workers: list[asyncio.Task[None]] = []
        self._runners: list[asyncio.Task[None]] = []
        self._spawned: dict[asyncio.Task[Any], int | None] = {}
        self._cancelled: set[int] = set()
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    @property
    def stages(self) -> list[Stage]:
        return [slot.stage for slot in self._slots]

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Pipeline:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        for slot in self._slots:
            await slot.stage.start(_Context(self, slot))
        for slot in self._slots:
            self._workers.append(asyncio.create_task(self._work(slot), name=f"stage:{slot.stage.name}"))
            if type(slot.stage).run is not Stage.run:
                self._runners.append(asyncio.create_task(self._run(slot), name=f"run:{slot.stage.name}"))

    async def close(self) -> None:
        """Stop every worker, background loop and owned task, then the stages themselves."""
        if self._closed:
            return
        self._closed = True
        tasks = [*self._runners, *self._spawned, *self._workers]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for slot in reversed(self._slots):
            try:
                await slot.stage.stop()
            except Exception:
                log.exception("stage %s failed to stop", slot.stage.name)

    async def wait_runners(self) -> None:
        """Wait until every background loop (sources) has returned."""
        await asyncio.gather(*self._runners, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Wait until no event waits in any inbox and no stage or owned task is working."""
        while True:
            await self._idle.wait()
            await asyncio.sleep(0)
            if self._idle.is_set():
                return

    # ------------------------------------------------------------------ events

    def emit(self, event: Event, origin: _Slot | None = None) -> None:
        """Publish an event and deliver it to every other stage that accepts it."""
        if self._closed:
            return
        turn = event.turn
        if turn is not None and turn in self._cancelled and not isinstance(event, REPORTS_AFTER_CANCEL):
            return
        self.bus.publish(event)
        for slot in self._slots:
            if slot is origin:
                continue
            stage = slot.stage
            if stage.urgent and isinstance(event, stage.urgent):
                try:
                    stage.on_urgent(event)
                except Exception:
                    log.exception("stage %s failed on urgent %s", stage.name, event.type)
            elif stage.accepts and isinstance(event, stage.accepts):
                self._add_pending(1)
                slot.inbox.put_nowait(event)

    def cancel_turn(self, turn_id: int, reason: str = "") -> None:
        """Cancel a turn everywhere, once: stop its work, drop its events, tell everyone it was interrupted."""
        if turn_id in self._cancelled or self._closed:
            return
        self._cancelled.add(turn_id)
        log.info("turn %d cancelled%s", turn_id, f" ({reason})" if reason else "")
        for slot in self._slots:
            if slot.current is not None and slot.current_turn == turn_id:
                slot.current.cancel()
        for task, task_turn in tuple(self._spawned.items()):
            if task_turn == turn_id:
                task.cancel()
        self.emit(Interrupted(turn_id=turn_id))

    def is_cancelled(self, turn_id: int | None) -> bool:
        return turn_id is not None and turn_id in self._cancelled

    def spawn(self, coro: Coroutine[Any, Any, Any], turn_id: int | None = None, owner: str = "") -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{owner}:turn{turn_id}")
        self._spawned[task] = turn_id
        self._add_pending(1)
        task.add_done_callback(self._spawned_done)
        return task

    def _spawned_done(self, task: asyncio.Task[Any]) -> None:
        self._spawned.pop(task, None)
        self._add_pending(-1)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("background task %s failed: %s", task.get_name(), exc, exc_info=exc)

    def _add_pending(self, delta: int) -> None:
        self._pending += delta
        if self._pending > 0:
            self._idle.clear()
        else:
            self._idle.set()

    # ------------------------------------------------------------------ workers

    async def _run(self, slot: _Slot) -> None:
        try:
            await slot.stage.run()
        except asyncio.CancelledError:
            raise
        except SaijinError as exc:
            log.debug("stage %s stopped", slot.stage.name, exc_info=True)
            self.emit(Error(message=str(exc)), origin=slot)
        except Exception as exc:
            log.exception("stage %s background loop failed", slot.stage.name)
            self.emit(Error(message=f"{slot.stage.name} stopped: {exc}"), origin=slot)

    async def _work(self, slot: _Slot) -> None:
        while True:
            event = await slot.inbox.get()
            try:
                if self.is_cancelled(event.turn) and not isinstance(event, REPORTS_AFTER_CANCEL):
                    continue
                slot.current_turn = event.turn
                task = asyncio.create_task(self._process(slot, event), name=f"{slot.stage.name}:{event.type}")
                slot.current = task
                try:
                    await asyncio.wait({task})  # a cancelled turn cancels the task, not this worker
                except asyncio.CancelledError:
                    task.cancel()
                    raise
            finally:
                slot.current = None
                slot.current_turn = None
                self._add_pending(-1)

    async def _process(self, slot: _Slot, event: Event) -> None:
        stage = slot.stage
        try:
            async for produced in stage.process(event):
                self.emit(produced, origin=slot)
        except asyncio.CancelledError:
            raise
        except SaijinError as exc:
            log.debug("stage %s failed on %s", stage.name, event.type, exc_info=True)
            log.warning("%s: %s", stage.name, exc)
            self.emit(Error(message=str(exc), turn_id=event.turn), origin=slot)
        except Exception as exc:
            log.exception("stage %s failed on %s", stage.name, event.type)
            self.emit(Error(message=f"{stage.name} failed: {exc}", turn_id=event.turn), origin=slot)

