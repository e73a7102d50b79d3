"""Entering and leaving bedtime by every route: voice, the page, --mode, the schedule; and across a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from assistant.config.loader import Settings, load_settings
from assistant.config.schema import BedtimeConfig, PersonaConfig, ScheduleWindow
from assistant.conversation.session import SessionStage, remember_in
from assistant.events import (
    Mode,
    SetMode,
    Sleeping,
    State,
    Subtitle,
    TextInput,
    TurnDone,
    UserSpeechEnded,
    UserTurnReady,
)
from assistant.llm.prompt import UserMood, build_messages
from assistant.modes.bedtime import BedtimeStage
from assistant.modes.schedule import is_inside, startup_mode
from assistant.pipeline.assemble import Conversation, Options
from assistant.pipeline.runtime import Pipeline
from assistant.speech.understand import UnderstandStage
from assistant.stage import run_stage
from assistant.state import AppState
from tests.modes.conftest import UNREACHABLE_LLM, FakeClock, Night, Recorder

NIGHT = ScheduleWindow(start="23:00", end="06:00")


def at(hour: int, minute: int = 0, day: int = 20) -> datetime:
    return datetime(2026, 11, day, hour, minute)


async def test_voice_enters_and_leaves_with_a_line_and_a_mode_event(night: Callable[..., Night],
                                                                      night_persona: PersonaConfig) -> None:
    async with night() as n:
        n.emit(TextInput(text="Bedtime mode, please."))
        entering = await n.record.wait_for(Subtitle)
        await n.record.wait_for(Mode, lambda e: e.value == "bedtime")
        assert entering.text in night_persona.bedtime.entering and entering.is_scripted
        await n.record.wait_for(TurnDone, lambda e: e.turn_id == entering.turn_id)
        assert n.reply.mode == n.bedtime.mode == "bedtime"

        mark = len(n.record.events)
        n.emit(TextInput(text="good night"))  # bedtime now: a good-night line, no LLM (which is down anyway)
        line = await n.record.wait_for(Subtitle, after=mark)
        assert line.text in night_persona.bedtime.good_night

        mark = len(n.record.events)
        n.emit(TextInput(text="Good morning!"))
        leaving = await n.record.wait_for(Subtitle, after=mark)
        await n.record.wait_for(Mode, lambda e: e.value == "normal", after=mark)
        assert leaving.text in night_persona.bedtime.leaving
        assert n.reply.mode == n.bedtime.mode == "normal"


async def test_japanese_phrases_work_for_a_japanese_persona(night: Callable[..., Night],
                                                             personas: dict[str, PersonaConfig]) -> None:
    yuuri = personas["yuuri"]
    async with night(persona="yuuri") as n:
        n.emit(TextInput(text="そろそろ寝るね"))
        line = await n.record.wait_for(Subtitle)
        await n.record.wait_for(Mode, lambda e: e.value == "bedtime")
        assert line.text in yuuri.bedtime.entering and line.persona == "yuuri"


async def test_the_page_enters_and_leaves(night: Callable[..., Night]) -> None:
    async with night() as n:
        n.emit(SetMode(value="bedtime"))
        await n.record.wait_for(Mode, lambda e: e.value == "bedtime")
        await n.pipeline.wait_idle()
        assert n.reply.mode == n.bedtime.mode == "bedtime"
        n.emit(SetMode(value="normal"))
        await n.record.wait_for(Mode, lambda e: e.value == "normal", after=len(n.record.events) - 1)
        await n.pipeline.wait_idle()
        assert n.reply.mode == n.bedtime.mode == "normal"


async def test_mode_bedtime_from_the_command_line_starts_in_bedtime(config_dir: Path) -> None:
    """`saijin run --mode bedtime` sets Options.mode; the conversation announces bedtime at start."""
    settings = load_settings(config_dir, "cpu")
    options = Options(mode="bedtime", input="text", output="none", llm_url=UNREACHABLE_LLM, use_memory=False)
    conversation = Conversation(settings, options)
    record = Recorder(conversation.bus)
    async with conversation:
        await record.wait_for(Mode, lambda e: e.value == "bedtime")
        await conversation.pipeline.wait_idle()
    assert [e.value for e in record.of(Mode)] == ["bedtime"]


async def test_session_stage_started_in_bedtime_tells_every_stage(night: Callable[..., Night]) -> None:
    async with night(mode="bedtime") as n:
        await n.record.wait_for(Mode, lambda e: e.value == "bedtime")
        await n.pipeline.wait_idle()
        assert n.reply.mode == n.bedtime.mode == "bedtime"
        assert [e.value for e in n.record.of(Mode)] == ["bedtime"]


async def test_the_schedule_enters_at_its_start_and_leaves_at_its_end(night: Callable[..., Night],
                                                                       bedtime_cfg: BedtimeConfig,
                                                                       fake_clock: FakeClock) -> None:
    bedtime_cfg.schedule = NIGHT
    fake_clock.set_wall(at(22, 58))
    async with night() as n:
        await n.pipeline.wait_idle()
        fake_clock.set_wall(at(22, 59))
        await asyncio.sleep(0.1)  # ten polls
        assert not n.record.of(SetMode) and n.bedtime.mode == "normal"
        fake_clock.set_wall(at(23, 0))
        await n.record.wait_for(Mode, lambda e: e.value == "bedtime")
        await n.pipeline.wait_idle()
        assert n.reply.mode == "bedtime"

        # By voice the user may leave early; the schedule does not force bedtime back that night.
        mark = len(n.record.events)
        n.emit(TextInput(text="normal mode"))
        await n.record.wait_for(Mode, lambda e: e.value == "normal", after=mark)
        fake_clock.set_wall(at(23, 30))
        await n.pipeline.wait_idle()
        mark = len(n.record.events)
        n.emit(SetMode(value="bedtime"))  # ...and come back from the page
        await n.record.wait_for(Mode, lambda e: e.value == "bedtime", after=mark)

        mark = len(n.record.events)
        fake_clock.set_wall(at(5, 59, day=21))
        await n.pipeline.wait_idle()
        fake_clock.set_wall(at(6, 0, day=21))
        await n.record.wait_for(Mode, lambda e: e.value == "normal", after=mark)
        assert n.record.of(SetMode)[-1] == SetMode(value="normal")


async def test_the_morning_wakes_a_sleeping_assistant(night: Callable[..., Night], bedtime_cfg: BedtimeConfig,
                                                      fake_clock: FakeClock) -> None:
    bedtime_cfg.schedule = NIGHT
    fake_clock.set_wall(at(23, 30))
    async with night(mode="bedtime") as n:
        await n.record.wait_for(Mode)
        fake_clock.advance(bedtime_cfg.sleep_after_min * 60 + 1)
        await n.record.wait_for(Sleeping, lambda e: e.is_asleep)
        mark = len(n.record.events)
        fake_clock.set_wall(at(6, 0, day=21))
        await n.record.wait_for(Mode, lambda e: e.value == "normal", after=mark)
        woke = n.record.events[mark:]
        assert Sleeping(is_asleep=False) in woke
        assert State(value="listening") in woke
        assert not n.bedtime.is_asleep and not n.responder.is_asleep


def test_windows_that_cross_midnight() -> None:
    assert is_inside(NIGHT, at(23, 0)) and is_inside(NIGHT, at(2, 0)) and is_inside(NIGHT, at(5, 59))
    assert not is_inside(NIGHT, at(6, 0)) and not is_inside(NIGHT, at(12, 0)) and not is_inside(NIGHT, at(22, 59))
    nap = ScheduleWindow(start="13:00", end="14:30")
    assert is_inside(nap, at(13, 0)) and is_inside(nap, at(14, 29)) and not is_inside(nap, at(14, 30))
    assert not is_inside(ScheduleWindow(start="10:00", end="10:00"), at(10, 0))


async def test_bedtime_survives_a_restart_inside_its_window(tmp_path: Path, personas: dict[str, PersonaConfig],
                                                            bedtime_cfg: BedtimeConfig, fake_clock: FakeClock) -> None:
    bedtime_cfg.schedule = NIGHT
    path = tmp_path / "state.json"
    fake_clock.set_wall(at(22, 0))
    state = AppState(path).load()
    remember = remember_in(state, "normal", clock=lambda: fake_clock.wall.timestamp())
    session = SessionStage(personas, "joe", "normal", remember=remember)
    pipeline = Pipeline([session])
    async with pipeline:
        fake_clock.set_wall(at(22, 30))
        pipeline.emit(SetMode(value="bedtime"))  # by hand, before the window
        await pipeline.wait_idle()
        fake_clock.set_wall(at(22, 40))
        pipeline.emit(SetMode(value="normal"))
        await pipeline.wait_idle()
        fake_clock.set_wall(at(23, 10))
        pipeline.emit(SetMode(value="bedtime"))  # inside the window
        await pipeline.wait_idle()

    saved = AppState(path).load()
    assert saved.mode == "bedtime" and saved.persona == "joe"
    assert saved.mode_set_at == at(23, 10).timestamp()
    assert startup_mode(bedtime_cfg, saved, at(23, 40)) == "bedtime"
    assert startup_mode(bedtime_cfg, saved, at(3, 0, day=21)) == "bedtime"
    assert startup_mode(bedtime_cfg, saved, at(7, 0, day=21)) == "normal"  # the window is over
    assert startup_mode(bedtime_cfg, saved, at(3, 0, day=21), requested="normal") == "normal"  # --mode wins


def test_the_startup_mode_rules(bedtime_cfg: BedtimeConfig, tmp_path: Path) -> None:
    def saved(mode: str, when: datetime) -> AppState:
        state = AppState(tmp_path / "s.json")
        state.mode, state.mode_set_at = mode, when.timestamp()
        return state

    # Without a schedule: a bedtime less than 12 hours old is restored.
    assert startup_mode(bedtime_cfg, saved("bedtime", at(23, 0)), at(23, 30)) == "bedtime"
    assert startup_mode(bedtime_cfg, saved("bedtime", at(23, 0)), at(11, 30, day=21)) == "normal"
    assert startup_mode(bedtime_cfg, None, at(23, 30)) == "normal"
    assert startup_mode(bedtime_cfg, None, at(23, 30), requested="bedtime") == "bedtime"
    # With one: inside the window it is bedtime unless normal was chosen since the window began.
    bedtime_cfg.schedule = NIGHT
    assert startup_mode(bedtime_cfg, None, at(23, 30)) == "bedtime"
    assert startup_mode(bedtime_cfg, saved("normal", at(15, 0)), at(23, 30)) == "bedtime"
    assert startup_mode(bedtime_cfg, saved("normal", at(23, 20)), at(23, 30)) == "normal"
    # Outside it: last night's bedtime is over; this evening's hand-chosen one stays.
    assert startup_mode(bedtime_cfg, saved("bedtime", at(23, 20)), at(8, 0, day=21)) == "normal"
    assert startup_mode(bedtime_cfg, saved("bedtime", at(21, 30)), at(21, 45)) == "bedtime"
    assert startup_mode(bedtime_cfg, saved("bedtime", at(23, 0, day=25)), at(21, 45)) == "normal"  # a clock jump


def test_the_prompt_carries_the_bedtime_overlay_and_reassurance(shipped_settings: Settings) -> None:
    rules, persona = shipped_settings.rules, shipped_settings.personas["yuuri"]
    overlay, comfort = rules.bedtime_overlay.strip(), rules.reassurance_first.strip()
    assert overlay and comfort

    comfort = comfort.rstrip("。")

    def prompt(mode: str, mood: UserMood | None = None) -> tuple[str, str]:
        """(the system message, the user's message): the mode is in the first, this turn's notes in the second."""
        messages = build_messages(rules, persona, "眠れないの", mode, mood)
        assert messages[0].role == "system" and messages[-1].content.startswith("眠れないの")
        return messages[0].content, messages[-1].content

    assert overlay in prompt("bedtime")[0] and comfort not in prompt("bedtime")[1]
    system, user = prompt("bedtime", UserMood("sad", 0.9))
    assert overlay in system and comfort in user and comfort not in system
    assert comfort in prompt("bedtime", UserMood("fearful", 0.8))[1]
    assert overlay not in prompt("normal")[0] and comfort not in prompt("normal", UserMood("sad", 0.9))[1]


def test_a_bedtime_stage_alone_never_switches_outside_the_schedule(bedtime_cfg: BedtimeConfig,
                                                                    personas: dict[str, PersonaConfig],
                                                                    fake_clock: FakeClock) -> None:
    stage = BedtimeStage(bedtime_cfg, personas, "joe", clock=fake_clock.now, monotonic=fake_clock.monotonic)
    for _ in range(3):
        fake_clock.advance(3600 * 8)
        assert stage.tick() == []


async def test_spoken_phrases_recognised_by_whisper_enter_and_leave(
        night: Callable[..., Night], whisper_tiny_en: Any, speech_maker: Any, shipped_settings: Settings,
        bedtime_cfg: BedtimeConfig) -> None:
    """Real speech (Piper joe) -> the real Understand stage (Whisper tiny.en) -> the bedtime responder."""
    asr_cfg = shipped_settings.assistant.asr.model_copy(update={"language": "en", "speculative": False})
    understand = UnderstandStage(whisper_tiny_en, None, asr_cfg, shipped_settings.assistant.emotion, bedtime_cfg)
    silence = np.zeros(4800, dtype=np.float32)
    utterances = []
    for turn_id, text in ((1, "OK, it is time for bed."), (2, "Good morning!")):
        audio = np.concatenate([silence, speech_maker.english(text).samples, silence])
        utterances.append(UserSpeechEnded(turn_id=turn_id, speech_end=len(audio) / 16000, audio=audio))
    heard = [e for e in await run_stage(understand, utterances) if isinstance(e, UserTurnReady)]
    assert [e.turn_id for e in heard] == [1, 2], heard
    async with night() as n:
        await n.record.wait_for(Mode, lambda e: e.value == "normal")
        n.emit(heard[0])
        await n.record.wait_for(Mode, lambda e: e.value == "bedtime")
        await n.record.wait_for(TurnDone, lambda e: e.turn_id == 1)
        n.emit(heard[1])
        await n.record.wait_for(Mode, lambda e: e.value == "normal", after=len(n.record.events) - 1)
        await n.record.wait_for(TurnDone, lambda e: e.turn_id == 2)
    assert [e.value for e in n.record.of(Mode)] == ["normal", "bedtime", "normal"]
