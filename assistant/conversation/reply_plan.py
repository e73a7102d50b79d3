"""Choosing who answers a user turn: a scripted responder (bedtime, a persona switch) or the language model.

The reply stage asks :func:`plan_reply` first. Each responder in turn may answer (the first that does wins);
its lines are spoken at once, without the model, so these moments work even when the engine is slow or down.
A plan says who speaks the reply (after a switch, the new persona), which lines and events come first, and
whether the model answers after them. Nothing here streams, writes memory or emits: a plan is a value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from assistant.config.schema import PersonaConfig
from assistant.conversation.responders import Responder, Session
from assistant.events import Event, UserTurnReady


@dataclass(frozen=True)
class ReplyPlan:
    """How one turn is answered: scripted lines first (if a responder answered), then maybe the model."""

    #: Who says the reply's lines (the session's persona, or the one a switch hands the conversation to).
    speaker: PersonaConfig
    #: Lines to speak at once, in ``speaker``'s voice.
    lines: tuple[str, ...] = ()
    #: Events to emit before the lines (SetPersona, SetMode, WakeRequest).
    events: tuple[Event, ...] = ()
    #: Whether the language model answers (after the lines, when there are any).
    asks_model: bool = True
    #: Why a responder answered, for the log; "" when none did.
    reason: str = ""

    @property
    def is_scripted(self) -> bool:
        """A responder answered (its lines may still be followed by the model)."""
        return bool(self.reason)


def plan_reply(turn: UserTurnReady, persona: PersonaConfig, mode: str, responders: Sequence[Responder],
               personas: Mapping[str, PersonaConfig]) -> ReplyPlan:
    """The plan for ``turn`` in a session of ``persona`` in ``mode``: the first responder's answer, else the model."""
    session = Session(persona=persona, mode=mode)
    for responder in responders:
        scripted = responder.respond(turn, session)
        if scripted is None:
            continue
        speaker = personas.get(scripted.persona or persona.id, persona)
        return ReplyPlan(speaker=speaker, lines=tuple(scripted.lines), events=tuple(scripted.events),
                         asks_model=scripted.then_llm, reason=scripted.reason or "scripted")
    return ReplyPlan(speaker=persona)
