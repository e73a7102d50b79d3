"""The session: which persona speaks and in which mode; announces changes and remembers them."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping

from assistant.config.schema import PersonaConfig
from assistant.events import MODES, Error, Event, Mode, SetMode, SetPersona, Speaker
from assistant.stage import Stage, StageContext
from assistant.state import AppState

log = logging.getLogger(__name__)


def remember_in(state: AppState, mode: str, clock: Callable[[], float] = time.time) -> Callable[[str, str], None]:
    """A ``remember`` callback for a SessionStage that starts in ``mode``: keeps the persona, and the mode with
    when it was chosen, in ``state`` (saved at once).

    The mode's time moves only when the mode changes (a persona switch does not touch it), so a restart can
    tell whether bedtime was chosen inside the current window (see assistant.modes.schedule.startup_mode).
    """
    started_at = clock()
    current = [mode]

    def remember(persona: str, new_mode: str) -> None:
        state.persona = persona
        if new_mode != current[0]:
            current[0] = new_mode
            state.mode, state.mode_set_at = new_mode, clock()
        elif state.mode != new_mode or state.mode_set_at is None:
            state.mode, state.mode_set_at = new_mode, started_at  # the file still held an older session's mode
        state.save()

    return remember


class SessionStage(Stage):
    """The one owner of the session's persona and mode: SetPersona / SetMode requests -> Speaker / Mode
    announcements (also once at start). ``Speaker`` means only this: the session's persona is now that one;
    who says a given line is on the line's own events (Subtitle, ReplyDone, TurnDone).

    SetPersona is urgent: a switch by voice asks for it just before the new persona's greeting, and the
    announcement must come first (the page shows her before her first line)."""

    accepts = (SetMode,)
    urgent = (SetPersona,)

    def __init__(self, personas: Mapping[str, PersonaConfig], persona_id: str, mode: str = "normal",
                 remember: Callable[[str, str], None] | None = None) -> None:
        super().__init__()
        self.personas = personas
        self.persona_id = persona_id
        self.mode = mode
        self._remember = remember

    async def start(self, ctx: StageContext) -> None:
        await super().start(ctx)
        persona = self.personas[self.persona_id]
        self.emit(Speaker(persona=persona.id, display_name=persona.display_name))
        self.emit(Mode(value=self.mode))

    def on_urgent(self, event: Event) -> None:
        if isinstance(event, SetPersona):
            self.emit(self.switch(event.persona))

    def switch(self, persona_id: str) -> Event:
        """Make ``persona_id`` the session's persona: its Speaker (also when she speaks already), or an Error."""
        persona = self.personas.get(persona_id)
        if persona is None:
            return Error(message=f"no persona named {persona_id!r} — choose one of: {', '.join(sorted(self.personas))}")
        if persona.id != self.persona_id:
            log.info("persona: %s -> %s", self.persona_id, persona.id)
            self.persona_id = persona.id
            self._save()
        return Speaker(persona=persona.id, display_name=persona.display_name)

    async def process(self, event: Event) -> AsyncIterator[Event]:
        if isinstance(event, SetMode):
            if event.value not in MODES:
                yield Error(message=f"unknown mode {event.value!r} — use one of: {', '.join(MODES)}")
                return
            if event.value != self.mode:
                log.info("mode: %s -> %s", self.mode, event.value)
                self.mode = event.value
                self._save()
            yield Mode(value=self.mode)

    def _save(self) -> None:
        if self._remember is not None:
            try:
                self._remember(self.persona_id, self.mode)
            except OSError as exc:
                log.warning("could not remember the session state: %s", exc)
