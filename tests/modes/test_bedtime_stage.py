"""The bedtime stage alone, Pipecat style: feed it events (and move its clock), look at what comes out. It asks
for its lines (SayRequest) and never speaks or ends a turn itself; it alone says when the assistant sleeps."""

from __future__ import annotations

from assistant.config.loader import Settings
from assistant.config.schema import BedtimeConfig, PersonaConfig
from assistant.conversation.reply import ReplyStage
from assistant.conversation.turns import TurnController
from assistant.events import (
    Interrupted,
    PlaybackFinished,
    ReplyDone,
    SayRequest,
    ScriptedLine,
    Sleeping,
    State,
    Subtitle,
    TextInput,
    TurnDone,
    UserTranscript,
    WakeRequest,
)
from assistant.llm.router import EngineRouter
from assistant.memory.recall import MemoryContext
from assistant.modes.bedtime import BedtimeStage
from assistant.stage import run_stage
from tests.modes.conftest import FakeClock


def bedtime_stage(bedtime_cfg: BedtimeConfig, personas: dict[str, PersonaConfig], clock: FakeClock) -> BedtimeStage:
    return BedtimeStage(bedtime_cfg, personas, "joe", mode="bedtime", clock=clock.now, monotonic=clock.monotonic)


async def test_it_asks_for_its_lines_and_sleeps_when_the_last_one_is_done(
        bedtime_cfg: BedtimeConfig, personas: dict[str, PersonaConfig], fake_clock: FakeClock,
        night_persona: PersonaConfig) -> None:
    lines = night_persona.bedtime
    stage = bedtime_stage(bedtime_cfg, personas, fake_clock)
    assert await run_stage(stage, []) == []

    # Quiet long enough: it asks for a presence line, once.
    fake_clock.advance(bedtime_cfg.presence_after_s)
    presence = SayRequest(persona="joe", text=lines.presence[0])
    assert stage.tick() == [presence]
    assert stage.tick() == []
    # The turn controller opens its turn and the reply stage speaks and ends it: nothing more from bedtime.
    assert await run_stage(stage, [
        ScriptedLine(turn_id=7, persona="joe", text=presence.text),
        PlaybackFinished(turn_id=7, sentence_index=0, played_s=1.0, duration_s=1.0),
        TurnDone(turn_id=7, persona="joe", spoken_text=presence.text),
    ]) == []
    assert not stage.is_asleep

    # The sleep timer: the last good-night line, faded out; when its turn is done, sleep.
    fake_clock.advance(bedtime_cfg.sleep_after_min * 60)
    last = SayRequest(persona="joe", text=lines.last_good_night[0], fade_out_s=bedtime_cfg.fade_out_s)
    assert stage.tick() == [last]
    assert await run_stage(stage, [
        ScriptedLine(turn_id=8, persona="joe", text=last.text, fade_out_s=last.fade_out_s),
        PlaybackFinished(turn_id=8, sentence_index=0, played_s=2.0, duration_s=2.0),
        TurnDone(turn_id=8, persona="joe", spoken_text=last.text),
    ]) == [Sleeping(is_asleep=True), State(value="sleeping")]
    assert stage.is_asleep

    # Asleep: no more lines; talk does not wake it, a wake phrase (the responder's WakeRequest) does.
    fake_clock.advance(bedtime_cfg.sleep_after_min * 120)
    assert stage.tick() == []
    assert await run_stage(stage, [TextInput(text="hello?"), UserTranscript(turn_id=9, text="hello?", language="en")]) == []
    assert stage.is_asleep
    assert await run_stage(stage, [WakeRequest(), WakeRequest()]) == [Sleeping(is_asleep=False)]
    assert not stage.is_asleep


async def test_a_cut_last_line_keeps_it_awake(bedtime_cfg: BedtimeConfig, personas: dict[str, PersonaConfig],
                                              fake_clock: FakeClock) -> None:
    bedtime_cfg.presence_after_s = 10_000  # only the sleep timer here
    stage = bedtime_stage(bedtime_cfg, personas, fake_clock)
    await run_stage(stage, [])
    fake_clock.advance(bedtime_cfg.sleep_after_min * 60)
    [last] = stage.tick()
    assert isinstance(last, SayRequest) and last.fade_out_s == bedtime_cfg.fade_out_s
    assert await run_stage(stage, [
        ScriptedLine(turn_id=3, persona="joe", text=last.text, fade_out_s=last.fade_out_s),
        Interrupted(turn_id=3),
        TurnDone(turn_id=3, persona="joe", spoken_text=""),
    ]) == []
    assert not stage.is_asleep


async def test_the_turn_controller_opens_a_turn_for_a_line(shipped_settings: Settings) -> None:
    turns = TurnController(shipped_settings.assistant.barge_in)
    out = await run_stage(turns, [TextInput(text="hi"), SayRequest(persona="joe", text="I am still here.")])
    heard = next(e for e in out if isinstance(e, UserTranscript))
    [line] = [e for e in out if isinstance(e, ScriptedLine)]
    assert line == ScriptedLine(turn_id=heard.turn_id + 1, persona="joe", text="I am still here.")


class _Memory:
    """A memory that only counts what it is asked to keep."""

    def __init__(self) -> None:
        self.recorded: list[str] = []

    def record(self, persona: str, role: str, text: str, **_: object) -> None:
        self.recorded.append(text)

    def view(self, persona: str, user_text: str) -> MemoryContext:
        raise AssertionError("a scripted line needs no memory")

    def after_turn(self, persona: str) -> None:
        pass

    def pause_background(self) -> None:
        pass


async def test_the_reply_stage_speaks_a_line_and_ends_its_turn(shipped_settings: Settings,
                                                               personas: dict[str, PersonaConfig],
                                                               unreachable_router: EngineRouter) -> None:
    memory = _Memory()
    reply = ReplyStage(shipped_settings.rules, personas, "joe", unreachable_router, memory, mode="bedtime",
                       is_voiced=False)
    text = "Good night. Sweet dreams."
    out = await run_stage(reply, [ScriptedLine(turn_id=4, persona="joe", text=text, fade_out_s=3.0)])
    assert [type(e) for e in out] == [Subtitle, ReplyDone, TurnDone]
    subtitle = out[0]
    assert isinstance(subtitle, Subtitle)
    assert (subtitle.turn_id, subtitle.text, subtitle.is_scripted, subtitle.fade_out_s) == (4, text, True, 3.0)
    assert subtitle.language == personas["joe"].language
    assert out[2] == TurnDone(turn_id=4, persona="joe", spoken_text=text)
    assert memory.recorded == []  # said to nobody: no part of the conversation
