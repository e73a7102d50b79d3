"""Fixtures for the bedtime mode tests: the shipped settings, an English persona with bedtime lines (spoken by
the real Piper joe voice), a clock the test moves, an engine nobody answers, and a bus recorder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from assistant.config.loader import Settings, load_settings
from assistant.config.schema import BedtimeConfig, BedtimeLines, PersonaConfig
from assistant.events import Event
from assistant.llm.router import EngineRouter, override_routing
from assistant.pipeline.bus import Bus

ROOT = Path(__file__).resolve().parents[2]
#: Nothing listens on the discard port: every request is refused at once.
UNREACHABLE_LLM = "http://127.0.0.1:9/v1"

E = TypeVar("E", bound=Event)

NIGHT_LINES = BedtimeLines(
    entering=["Time to rest now."],
    leaving=["Good morning. Did you sleep well?"],
    good_night=["Sleep well."],
    reassurance=["It is all right. I am right here."],
    presence=["I am still here."],
    last_good_night=["Good night. Sweet dreams."],
)


@pytest.fixture(scope="session")
def shipped_settings() -> Settings:
    """The shipped config/ (assistant.yaml, rules.yaml, personas)."""
    return load_settings(ROOT / "config", "cpu")


@pytest.fixture
def bedtime_cfg(shipped_settings: Settings) -> BedtimeConfig:
    """The shipped bedtime settings (phrases in ja and en), a private copy a test may change."""
    return shipped_settings.assistant.bedtime.model_copy(deep=True)


@pytest.fixture(scope="session")
def night_persona(english_persona: PersonaConfig) -> PersonaConfig:
    """An English persona (Piper joe) with bedtime lines; its voice keeps the default bedtime style."""
    return english_persona.model_copy(update={
        "bedtime": NIGHT_LINES,
        "lines": {"engine_down": ["Sorry, I cannot think clearly right now."]},
    })


@pytest.fixture
def personas(night_persona: PersonaConfig, shipped_settings: Settings) -> dict[str, PersonaConfig]:
    return {"joe": night_persona, **shipped_settings.personas}


class FakeClock:
    """The wall clock and the monotonic clock, moved only by ``advance``."""

    def __init__(self, wall: datetime) -> None:
        self.wall = wall
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds

    def set_wall(self, wall: datetime) -> None:
        self.mono += max(0.0, (wall - self.wall).total_seconds())
        self.wall = wall


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 20, 21, 0))


@pytest.fixture
async def unreachable_router() -> AsyncIterator[EngineRouter]:
    """The real router and OpenAI-compatible engine, pointed at a port where nothing listens."""
    router = EngineRouter(override_routing(UNREACHABLE_LLM, None))
    yield router
    await router.aclose()


class Recorder:
    """Everything published on a bus, with a way to wait for an event."""

    def __init__(self, bus: Bus) -> None:
        self.events: list[Event] = []
        bus.subscribe(self.events.append)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, kind: type[E], where: Callable[[E], bool] = lambda e: True, timeout: float = 20.0,
                       after: int = 0) -> E:
        """The first ``kind`` event (from index ``after``) for which ``where`` holds; fails after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for event in self.events[after:]:
                if isinstance(event, kind) and where(event):
                    return event
            if loop.time() > deadline:
                seen = [e.type for e in self.events[after:]]
                raise AssertionError(f"no {kind.__name__} within {timeout} s; saw {seen}")
            await asyncio.sleep(0.01)


@pytest.fixture
def recorder_for() -> Callable[[Bus], Recorder]:
    return Recorder


class Night:
    """A bedtime conversation put together the way assistant.pipeline.assemble does it, with a fake clock."""

    def __init__(self, settings: Settings, personas: dict[str, PersonaConfig], router: EngineRouter,
                 bedtime_cfg: BedtimeConfig, clock: FakeClock, *, persona: str = "joe", mode: str = "normal",
                 is_voiced: bool = False, is_realtime: bool = False) -> None:
        from assistant.audio.output_stage import OutputStage
        from assistant.audio.sinks import NullSink
        from assistant.conversation.reply import ReplyStage
        from assistant.conversation.responders import PersonaSwitch
        from assistant.conversation.session import SessionStage
        from assistant.conversation.turns import TurnController
        from assistant.modes.bedtime import BedtimeResponder, BedtimeStage
        from assistant.pipeline.runtime import Pipeline
        from assistant.stage import Stage
        from assistant.tts.speech_stage import SpeechStage

        a = settings.assistant
        self.clock = clock
        self.turns = TurnController(a.barge_in, bedtime_cfg.barge_in_min_speech_ms)
        self.responder = BedtimeResponder(personas, bedtime_cfg)
        self.reply = ReplyStage(settings.rules, personas, persona, router, mode=mode,
                                responders=[self.responder, PersonaSwitch(personas)], is_voiced=is_voiced)
        self.bedtime = BedtimeStage(bedtime_cfg, personas, persona, mode=mode, clock=clock.now,
                                    monotonic=clock.monotonic, poll_s=0.01)
        stages: list[Stage] = [SessionStage(personas, persona, mode), self.turns, self.reply, self.bedtime]
        self.speech: SpeechStage | None = None
        if is_voiced:
            self.speech = SpeechStage(personas, a.tts)
            stages += [self.speech, OutputStage(NullSink(realtime=is_realtime))]
        self.pipeline = Pipeline(stages)
        self.pipeline.bus.subscribe(self.responder.observe)  # as assemble does: it follows Sleeping
        self.record = Recorder(self.pipeline.bus)

    async def __aenter__(self) -> Night:
        await self.pipeline.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pipeline.close()

    def emit(self, event: Event) -> None:
        self.pipeline.emit(event)


@pytest.fixture
def night(shipped_settings: Settings, personas: dict[str, PersonaConfig], unreachable_router: EngineRouter,
          bedtime_cfg: BedtimeConfig, fake_clock: FakeClock) -> Callable[..., Night]:
    """``night(mode="normal", is_voiced=False, persona="joe", is_realtime=False)`` -> a Night (``async with``).

    A voiced night speaks through the real SpeechStage (Piper joe) and OutputStage into a NullSink; it knows
    only the joe persona, so no other voice loads."""

    def make(mode: str = "normal", is_voiced: bool = False, persona: str = "joe", is_realtime: bool = False) -> Night:
        known = {"joe": personas["joe"]} if is_voiced else personas
        return Night(shipped_settings, known, unreachable_router, bedtime_cfg, fake_clock, persona=persona, mode=mode,
                     is_voiced=is_voiced, is_realtime=is_realtime)

    return make
