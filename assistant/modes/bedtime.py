"""Bedtime mode: the voice commands and scripted lines (BedtimeResponder), and the schedule, the presence
line after a long silence and the sleep timer (BedtimeStage).

Whether the assistant is asleep is the stage's to decide: it alone emits Sleeping. The responder hears a
wake phrase and asks (WakeRequest among its scripted events); it keeps its own view of sleep from the
Sleeping events it observes on the bus, as the turn controller does from the ones it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from assistant.config.schema import NEEDS_REASSURANCE, BedtimeConfig, PersonaConfig
from assistant.conversation.responders import Scripted, Session, contains_phrase, pick
from assistant.events import (
    Error,
    Event,
    InputEnded,
    Interrupted,
    Mode,
    PlaybackFinished,
    SayRequest,
    ScriptedLine,
    SetMode,
    Sleeping,
    Speaker,
    State,
    TextInput,
    TurnDone,
    TurnDropped,
    UserSpeechStarted,
    UserTranscript,
    UserTurnReady,
    WakeRequest,
)
from assistant.modes.schedule import is_inside
from assistant.stage import Stage, StageContext

log = logging.getLogger(__name__)

#: A last good-night line that never reports back as played (its voice failed) still ends in sleep after this.
PLAYBACK_GRACE_S = 120.0


def all_phrases(by_language: Mapping[str, list[str]]) -> list[str]:
    """Every language's phrases in one list (a Japanese speaker may say "good night" too)."""
    return [phrase for phrases in by_language.values() for phrase in phrases]


class BedtimeResponder:
    """Bedtime voice commands and the lines that need no LLM.

    - any mode: an enter phrase -> the persona's ``bedtime.entering`` line + SetMode("bedtime");
    - bedtime: an exit phrase -> ``bedtime.leaving`` + SetMode("normal"); a good-night phrase -> a
      ``good_night`` line (no LLM); a sad or fearful voice -> a ``reassurance`` line at once, then the LLM;
    - asleep: only a wake phrase is answered (it asks to wake: WakeRequest, and greets); everything else
      gets an empty reply (reason "asleep").

    Whether it is asleep it learns from the Sleeping events it ``observe``s (a bus observer).
    """

    def __init__(self, personas: Mapping[str, PersonaConfig], bedtime_cfg: BedtimeConfig,
                 rng: random.Random | None = None) -> None:
        self.personas = personas
        self.cfg = bedtime_cfg
        self._rng = rng
        self.enter_phrases = all_phrases(bedtime_cfg.enter_phrases)
        self.exit_phrases = all_phrases(bedtime_cfg.exit_phrases)
        self.wake_phrases = all_phrases(bedtime_cfg.wake_phrases)
        self.good_night_phrases = all_phrases(bedtime_cfg.good_night_phrases)
        #: Its view of the bedtime stage's Sleeping events (asleep after the sleep timer, until woken).
        self.is_asleep = False

    def observe(self, event: Event) -> None:
        """A bus observer: keeps ``is_asleep`` in step with the bedtime stage's Sleeping events."""
        if isinstance(event, Sleeping):
            self.is_asleep = event.is_asleep

    def _line(self, lines: list[str]) -> list[str]:
        line = pick(lines, self._rng)
        return [line] if line else []

    def respond(self, turn: UserTurnReady, session: Session) -> Scripted | None:
        persona = session.persona
        lines = persona.bedtime
        if self.is_asleep:
            return self._asleep(turn, persona)
        if session.mode != "bedtime":
            if contains_phrase(turn.text, self.enter_phrases):
                return Scripted(lines=self._line(lines.entering), events=[SetMode(value="bedtime")], persona=persona.id,
                                reason="enter bedtime")
            return None
        if contains_phrase(turn.text, self.exit_phrases):
            return Scripted(lines=self._line(lines.leaving), events=[SetMode(value="normal")], persona=persona.id,
                            reason="leave bedtime")
        needs_comfort = turn.emotion in NEEDS_REASSURANCE
        if contains_phrase(turn.text, self.good_night_phrases) or contains_phrase(turn.text, self.enter_phrases):
            said = (self._line(lines.reassurance) if needs_comfort else []) + self._line(lines.good_night)
            return Scripted(lines=said, persona=persona.id, reason="good night")
        if needs_comfort:
            comfort = self._line(lines.reassurance)
            if comfort:
                return Scripted(lines=comfort, persona=persona.id, then_llm=True, reason=f"reassurance ({turn.emotion})")
        return None

    def _asleep(self, turn: UserTurnReady, persona: PersonaConfig) -> Scripted:
        if not contains_phrase(turn.text, self.wake_phrases):
            return Scripted(persona=persona.id, reason="asleep")
        events: list[Event] = [WakeRequest()]
        if contains_phrase(turn.text, self.exit_phrases):
            # 「おはよう」 wakes and ends the night.
            events.append(SetMode(value="normal"))
            greeting = self._line(persona.bedtime.leaving)
        else:
            greeting = self._line(persona.bedtime.presence) or self._line(persona.bedtime.leaving)
        return Scripted(lines=greeting, events=events, persona=persona.id, reason="woken")


@dataclass
class _OwnLine:
    """A line the stage speaks on its own (presence, last good night) in a turn of its own, once the turn
    controller has opened it (``turn_id`` is None until then)."""

    persona: str
    text: str
    is_last: bool
    deadline: float
    turn_id: int | None = None


class BedtimeStage(Stage):
    """The bedtime schedule, the presence line, the sleep timer, and sleep itself.

    In: Mode, Speaker; UserSpeechStarted / UserTranscript / TextInput (the user is awake: the silence timers
    restart); ScriptedLine (the turn opened for one of its lines); PlaybackFinished / TurnDone / TurnDropped /
    Error (a reply ended, or one of its own lines did); WakeRequest (a wake phrase); InputEnded (the timers
    stop). Urgent: Interrupted (an own line was cut).
    Out: SetMode at the schedule's start and end; after ``presence_after_s`` of quiet in bedtime a presence
    line, after ``sleep_after_min`` the last good-night line (``fade_out_s`` set), each as a SayRequest: the
    turn controller opens a turn for it (ScriptedLine) and the reply stage speaks it and ends it (TurnDone);
    then Sleeping(True) and State("sleeping"). It alone emits Sleeping: Sleeping(False) on a WakeRequest, or
    silently when bedtime ends (the page, the schedule's end).

    ``clock`` gives the local wall-clock time (for the schedule) and ``monotonic`` seconds (for the
    timers); both are injectable so tests control time. The timers are checked every ``poll_s``.
    """

    accepts = (Mode, Speaker, WakeRequest, ScriptedLine, UserSpeechStarted, UserTranscript, TextInput,
               PlaybackFinished, TurnDone, TurnDropped, Error, InputEnded)
    urgent = (Interrupted,)

    def __init__(self, bedtime_cfg: BedtimeConfig, personas: Mapping[str, PersonaConfig], persona_id: str, *,
                 mode: str = "normal", clock: Callable[[], datetime] = datetime.now,
                 monotonic: Callable[[], float] = time.monotonic, poll_s: float = 1.0,
                 rng: random.Random | None = None) -> None:
        super().__init__()
        self.cfg = bedtime_cfg
        self.personas = personas
        self.persona_id = persona_id
        self.mode = mode
        self.poll_s = poll_s
        self._clock = clock
        self._monotonic = monotonic
        self._rng = rng
        #: Asleep: the sleep timer fired and no wake phrase (nor the end of bedtime) has come since.
        self.is_asleep = False
        self._quiet_since = monotonic()
        self._is_presence_said = False
        self._own: _OwnLine | None = None
        #: Own lines cut before their turn was opened: their ScriptedLine is cancelled when it comes.
        self._unwanted: list[str] = []
        self._is_inside: bool | None = None
        self._input_ended = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def start(self, ctx: StageContext) -> None:
        await super().start(ctx)
        if self.cfg.schedule is not None:
            # Only the window's edges switch the mode; the mode at start-up comes from schedule.startup_mode.
            self._is_inside = is_inside(self.cfg.schedule, self._clock())
        self._quiet_since = self._monotonic()

    async def run(self) -> None:
        while not self._input_ended.is_set():
            for event in self.tick():
                self.emit(event)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._input_ended.wait(), self.poll_s)

    # ------------------------------------------------------------------ time

    def tick(self) -> list[Event]:
        """Look at the clocks once: the schedule's edges, the presence line, the sleep timer."""
        events = self._check_schedule()
        if self.mode != "bedtime" or self.is_asleep:
            return events
        now = self._monotonic()
        if self._own is not None:
            if self._own.is_last and now >= self._own.deadline:
                log.info("the last good-night line never finished playing; going to sleep anyway")
                self._own = None
                events += self._fall_asleep()
            return events
        quiet = now - self._quiet_since
        if quiet >= self.cfg.sleep_after_min * 60.0:
            events += self._say_last_good_night(now)
        elif quiet >= self.cfg.presence_after_s and not self._is_presence_said:
            events += self._say_presence(now)
        return events

    def _check_schedule(self) -> list[Event]:
        window = self.cfg.schedule
        if window is None:
            return []
        inside = is_inside(window, self._clock())
        was_inside, self._is_inside = self._is_inside, inside
        if was_inside is None or inside == was_inside:
            return []
        if inside:
            log.info("bedtime schedule: %s, entering bedtime mode", window.start)
            return [] if self.mode == "bedtime" else [SetMode(value="bedtime")]
        log.info("bedtime schedule: %s, leaving bedtime mode", window.end)
        events: list[Event] = self._wake() if self.is_asleep else []
        if self.mode == "bedtime":
            events.append(SetMode(value="normal"))
        return events

    # ------------------------------------------------------------------ own lines

    @property
    def persona(self) -> PersonaConfig:
        return self.personas[self.persona_id]

    def _ask_to_say(self, text: str, is_last: bool, now: float) -> SayRequest:
        persona = self.persona
        self._own = _OwnLine(persona=persona.id, text=text, is_last=is_last, deadline=now + PLAYBACK_GRACE_S)
        return SayRequest(persona=persona.id, text=text, fade_out_s=self.cfg.fade_out_s if is_last else 0.0)

    def _say_presence(self, now: float) -> list[Event]:
        self._is_presence_said = True
        line = pick(self.persona.bedtime.presence, self._rng)
        if not line:
            return []
        log.info("bedtime: %.0f s of quiet, a presence line", now - self._quiet_since)
        return [self._ask_to_say(line, is_last=False, now=now)]

    def _say_last_good_night(self, now: float) -> list[Event]:
        line = pick(self.persona.bedtime.last_good_night, self._rng)
        log.info("bedtime: %.1f min without speech, going to sleep", (now - self._quiet_since) / 60.0)
        if not line:
            return self._fall_asleep()
        return [self._ask_to_say(line, is_last=True, now=now)]

    def _on_scripted_line(self, event: ScriptedLine) -> None:
        own = self._own
        if own is not None and own.turn_id is None and (own.persona, own.text) == (event.persona, event.text):
            own.turn_id = event.turn_id
        elif event.text in self._unwanted:
            self._unwanted.remove(event.text)
            if self.ctx is not None:
                self.ctx.cancel_turn(event.turn_id, "the user spoke")

    def _finish_own(self) -> list[Event]:
        own, self._own = self._own, None
        return self._fall_asleep() if own is not None and own.is_last else []

    def _cancel_own(self) -> None:
        own, self._own = self._own, None
        if own is None:
            return
        if own.turn_id is None:
            self._unwanted.append(own.text)  # its turn is not open yet: cancelled when it is
        elif self.ctx is not None:
            self.ctx.cancel_turn(own.turn_id, "the user spoke")

    def _is_own(self, turn_id: int | None) -> bool:
        return self._own is not None and turn_id is not None and turn_id == self._own.turn_id

    # ------------------------------------------------------------------ sleep

    def _fall_asleep(self) -> list[Event]:
        self.is_asleep = True
        return [Sleeping(is_asleep=True), State(value="sleeping")]

    def _wake(self) -> list[Event]:
        self.is_asleep = False
        self._restart_quiet()
        return [Sleeping(is_asleep=False)]

    def _restart_quiet(self) -> None:
        self._quiet_since = self._monotonic()
        self._is_presence_said = False

    # ------------------------------------------------------------------ events

    def on_urgent(self, event: Event) -> None:
        if isinstance(event, Interrupted) and self._is_own(event.turn_id):
            self._own = None  # cut off (the user spoke): no sleep now

    async def process(self, event: Event) -> AsyncIterator[Event]:
        for produced in self._handle(event):
            yield produced

    def _handle(self, event: Event) -> list[Event]:
        if isinstance(event, Mode):
            return self._on_mode(event.value)
        if isinstance(event, Speaker):
            if event.persona in self.personas:
                self.persona_id = event.persona
            return []
        if isinstance(event, WakeRequest):
            return self._wake() if self.is_asleep else []
        if isinstance(event, ScriptedLine):
            self._on_scripted_line(event)
            return []
        if isinstance(event, UserSpeechStarted | UserTranscript | TextInput):
            if self.is_asleep:
                return []
            self._restart_quiet()
            if self._own is not None and not isinstance(event, UserTranscript):
                self._cancel_own()
            return []
        if isinstance(event, PlaybackFinished | TurnDone | TurnDropped | Error):
            if self._is_own(event.turn_id):
                if isinstance(event, Error):
                    log.info("bedtime line could not be spoken: %s", event.message)
                    return []  # the reply stage still ends its turn (or the grace period does)
                return self._finish_own() if isinstance(event, TurnDone | TurnDropped) else []
            if event.turn_id is not None and not self.is_asleep and not isinstance(event, Error):
                self._quiet_since = self._monotonic()  # a reply to the user just ended: the quiet starts now
            return []
        if isinstance(event, InputEnded) and event.is_final:
            self._input_ended.set()
        return []

    def _on_mode(self, value: str) -> list[Event]:
        previous, self.mode = self.mode, value
        if value == "bedtime" and previous != "bedtime":
            self._restart_quiet()
            return []
        if value != "bedtime" and previous == "bedtime":
            self._cancel_own()
            if self.is_asleep:
                return self._wake()
        return []
