"""The pipeline runtime: typed delivery in order, urgent events, turn cancellation, idle detection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from assistant.events import Error, Event, Interrupted, Subtitle, TextInput, UserTurnReady
from assistant.pipeline.bus import Bus
from assistant.pipeline.runtime import Pipeline
from assistant.stage import Stage, run_stage


class Talker(Stage):
    """Answers a turn with one subtitle every 10 ms, forever (until cancelled)."""

    accepts = (UserTurnReady,)

    def __init__(self) -> None:
        super().__init__()
        self.was_closed = asyncio.Event()

    async def process(self, event: Event) -> AsyncIterator[Event]:
        assert isinstance(event, UserTurnReady)
        try:
            for index in range(10_000):
                yield Subtitle(turn_id=event.turn_id, persona="miyu", sentence_index=index, text=f"{index}")
                await asyncio.sleep(0.01)
        finally:
            self.was_closed.set()


class Collector(Stage):
    accepts = (Subtitle,)
    urgent = (Interrupted,)

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Event] = []
        self.urgent_seen: list[Event] = []

    async def process(self, event: Event) -> AsyncIterator[Event]:
        self.seen.append(event)
        await asyncio.sleep(0.005)  # slower than the talker, so events queue up
        return
        yield

    def on_urgent(self, event: Event) -> None:
        self.urgent_seen.append(event)


class Broken(Stage):
    accepts = (TextInput,)

    async def process(self, event: Event) -> AsyncIterator[Event]:
        raise RuntimeError("boom")
        yield


async def test_cancelling_a_turn_stops_its_work_and_drops_its_events() -> None:
    bus = Bus()
    on_bus: list[Event] = []
    bus.subscribe(on_bus.append)
    talker, collector = Talker(), Collector()
    async with Pipeline([talker, collector], bus) as pipeline:
        pipeline.emit(UserTurnReady(turn_id=7, text="hi"))
        while len(collector.seen) < 5:
            await asyncio.sleep(0.005)
        pipeline.cancel_turn(7, "test")
        await asyncio.wait_for(talker.was_closed.wait(), 1)
        seen_at_cancel = len(collector.seen)
        emitted_at_cancel = sum(isinstance(e, Subtitle) for e in on_bus)
        await asyncio.sleep(0.1)
        await pipeline.wait_idle()
    assert len(collector.seen) <= seen_at_cancel + 1  # at most the one it was already processing
    assert sum(isinstance(e, Subtitle) for e in on_bus) == emitted_at_cancel
    assert any(isinstance(e, Interrupted) and e.turn_id == 7 for e in collector.urgent_seen)
    # Events of the cancelled turn emitted later are dropped at the door.
    assert pipeline.is_cancelled(7)


async def test_other_turns_go_on_after_a_cancel() -> None:
    talker, collector = Talker(), Collector()
    async with Pipeline([talker, collector]) as pipeline:
        pipeline.emit(UserTurnReady(turn_id=1, text="a"))
        await asyncio.sleep(0.05)
        pipeline.cancel_turn(1)
        pipeline.emit(UserTurnReady(turn_id=2, text="b"))
        await asyncio.sleep(0.1)
        pipeline.cancel_turn(2)
    turns = [e.turn for e in collector.seen]
    assert 2 in turns and turns == sorted(turns)


async def test_a_failing_stage_becomes_an_error_event_and_the_pipeline_goes_on() -> None:
    bus = Bus()
    errors: list[Error] = []
    bus.subscribe(lambda e: errors.append(e) if isinstance(e, Error) else None)
    async with Pipeline([Broken()], bus) as pipeline:
        pipeline.emit(TextInput(text="x"))
        pipeline.emit(TextInput(text="y"))
        await pipeline.wait_idle()
    assert [e.message for e in errors] == ["Broken failed: boom", "Broken failed: boom"]


async def test_run_stage_feeds_one_stage_alone() -> None:
    collector = Collector()
    out = await run_stage(collector, [Subtitle(turn_id=1, persona="p", sentence_index=0, text="a"),
                                      Interrupted(turn_id=1)])
    assert out == [] and len(collector.seen) == 1 and len(collector.urgent_seen) == 1
