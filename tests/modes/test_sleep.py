"""The quiet hours: a presence line after a long silence, the sleep timer, sleep itself, and only a wake phrase
waking it — spoken for real (Piper joe through the speech and output stages), on a clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from assistant.config.schema import BedtimeConfig, PersonaConfig
from assistant.events import (
    Audio,
    Interrupted,
    Mode,
    PlaybackFinished,
    PlaybackStarted,
    SetMode,
    Sleeping,
    State,
    Subtitle,
    TextInput,
    TurnDone,
    UserSpeechStarted,
)
from tests.modes.conftest import FakeClock, Night


async def test_presence_then_last_good_night_then_sleep_until_a_wake_phrase(
        night: Callable[..., Night], bedtime_cfg: BedtimeConfig, fake_clock: FakeClock,
        night_persona: PersonaConfig) -> None:
    lines = night_persona.bedtime
    async with night(mode="bedtime", is_voiced=True) as n:
        await n.record.wait_for(Mode, lambda e: e.value == "bedtime")
        await n.pipeline.wait_idle()

        # Quiet, but not yet long enough.
        fake_clock.advance(bedtime_cfg.presence_after_s - 1)
        await asyncio.sleep(0.1)
        assert not n.record.of(Subtitle)

        # Long enough: 「ここにいるよ」 in a turn of its own, really spoken, and finished.
        fake_clock.advance(1)
        presence = await n.record.wait_for(Subtitle)
        assert presence.text in lines.presence and presence.is_scripted and presence.fade_out_s == 0
        audio = await n.record.wait_for(Audio, lambda e: e.turn_id == presence.turn_id)
        assert audio.duration_s > 0.3
        await n.record.wait_for(PlaybackFinished, lambda e: e.turn_id == presence.turn_id)
        await n.record.wait_for(TurnDone, lambda e: e.turn_id == presence.turn_id)

        # Said once per silence, not every 90 s.
        fake_clock.advance(bedtime_cfg.presence_after_s * 2)
        await asyncio.sleep(0.1)
        assert len(n.record.of(Subtitle)) == 1

        # The user speaks: the silence starts again (typed here; speech does the same).
        mark = len(n.record.events)
        n.emit(TextInput(text="Are you there?"))  # the LLM is down: the persona apologises
        answer = await n.record.wait_for(TurnDone, lambda e: e.turn_id != presence.turn_id, after=mark)
        assert answer.turn_id > presence.turn_id  # turn ids never collide
        await n.pipeline.wait_idle()
        mark = len(n.record.events)
        fake_clock.advance(bedtime_cfg.sleep_after_min * 60 - 5)
        await n.record.wait_for(Subtitle, lambda e: e.text in lines.presence, after=mark)  # a new silence, a new line
        await n.record.wait_for(TurnDone, lambda e: e.turn_id > answer.turn_id, after=mark)
        assert not n.record.of(Sleeping)

        # N minutes without speech: the last good-night line, faded out, then sleep.
        fake_clock.advance(10)
        last = await n.record.wait_for(Subtitle, lambda e: e.text in lines.last_good_night, after=mark)
        assert last.fade_out_s == bedtime_cfg.fade_out_s and last.is_scripted
        await n.record.wait_for(PlaybackFinished, lambda e: e.turn_id == last.turn_id)
        await n.record.wait_for(Sleeping, lambda e: e.is_asleep)
        asleep_at = len(n.record.events)
        await n.record.wait_for(State, lambda e: e.value == "sleeping", after=asleep_at - 2)
        assert n.bedtime.is_asleep and n.responder.is_asleep

        # Asleep: nothing but a wake phrase gets an answer, and the avatar stays asleep.
        for said in ("good night", "bedtime mode", "normal mode", "switch to yuuri", "hello?"):
            mark = len(n.record.events)
            n.emit(TextInput(text=said))
            await n.record.wait_for(TurnDone, after=mark)
        await n.pipeline.wait_idle()
        assert not n.record.of(Subtitle)[n.record.of(Subtitle).index(last) + 1:]
        assert [e.value for e in n.record.events[asleep_at:] if isinstance(e, State)] == []
        assert not [e for e in n.record.events[asleep_at:] if isinstance(e, SetMode | Audio)]
        # Time passes: asleep, no presence line, no second good night.
        fake_clock.advance(bedtime_cfg.sleep_after_min * 120)
        await asyncio.sleep(0.1)
        assert n.record.of(Subtitle)[-1] == last

        mark = len(n.record.events)
        n.emit(TextInput(text="Wake up."))
        greeting = await n.record.wait_for(Subtitle, after=mark)
        assert greeting.text in lines.presence
        await n.record.wait_for(Sleeping, lambda e: not e.is_asleep, after=mark)
        await n.record.wait_for(TurnDone, lambda e: e.turn_id == greeting.turn_id, after=mark)
        await n.record.wait_for(State, lambda e: e.value == "listening", after=mark)
        woke = [e.value for e in n.record.events[mark:] if isinstance(e, State)]
        assert woke[-1] == "listening" and "speaking" in woke
        assert not n.bedtime.is_asleep and n.bedtime.mode == "bedtime"


async def test_speaking_over_the_last_good_night_keeps_it_awake(night: Callable[..., Night],
                                                                bedtime_cfg: BedtimeConfig,
                                                                fake_clock: FakeClock,
                                                                night_persona: PersonaConfig) -> None:
    bedtime_cfg.presence_after_s = 10_000  # only the sleep timer here
    async with night(mode="bedtime", is_voiced=True, is_realtime=True) as n:  # played at the audio clock
        await n.record.wait_for(Mode)
        await n.pipeline.wait_idle()
        fake_clock.advance(bedtime_cfg.sleep_after_min * 60)
        last = await n.record.wait_for(Subtitle, lambda e: e.text in night_persona.bedtime.last_good_night)
        await n.record.wait_for(PlaybackStarted, lambda e: e.turn_id == last.turn_id)
        n.emit(UserSpeechStarted(turn_id=999, onset=0.0))
        await n.record.wait_for(Interrupted, lambda e: e.turn_id == last.turn_id)
        await n.pipeline.wait_idle()
        assert not n.record.of(Sleeping) and not n.bedtime.is_asleep


async def test_without_voice_output_sleep_follows_the_line_at_once(night: Callable[..., Night],
                                                                   bedtime_cfg: BedtimeConfig,
                                                                   fake_clock: FakeClock) -> None:
    async with night(mode="bedtime") as n:
        await n.record.wait_for(Mode)
        fake_clock.advance(bedtime_cfg.sleep_after_min * 60)
        await n.record.wait_for(State, lambda e: e.value == "sleeping")
        kinds = [type(e) for e in n.record.events if isinstance(e, Subtitle | TurnDone | Sleeping | State)]
        assert kinds[-4:] == [Subtitle, TurnDone, Sleeping, State]
        # Leaving bedtime from the page wakes it too.
        mark = len(n.record.events)
        n.emit(SetMode(value="normal"))
        await n.record.wait_for(State, lambda e: e.value == "listening", after=mark)
        assert Sleeping(is_asleep=False) in n.record.events[mark:] and not n.responder.is_asleep


async def test_no_timers_outside_bedtime(night: Callable[..., Night], bedtime_cfg: BedtimeConfig,
                                         fake_clock: FakeClock) -> None:
    async with night(mode="normal") as n:
        await n.record.wait_for(Mode)
        fake_clock.advance(bedtime_cfg.sleep_after_min * 60 * 3)
        await asyncio.sleep(0.1)
        assert not n.record.of(Subtitle) and not n.record.of(Sleeping)
