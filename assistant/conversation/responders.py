"""Responders: replies that need no language model (persona switches, mode commands, scripted lines).

The reply stage asks each responder in turn before it calls the LLM; the first that answers wins. A
scripted reply is spoken at once, so these moments work even when the engine is slow or down.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from assistant.config.schema import PersonaConfig
from assistant.events import Event, SetPersona, UserTurnReady
from assistant.text import normalise_phrase


@dataclass(frozen=True)
class Session:
    """What a responder may look at: who is speaking and in which mode."""

    persona: PersonaConfig
    mode: str


@dataclass
class Scripted:
    """A reply that needs no LLM: lines to speak at once, events to emit first, maybe the LLM after."""

    lines: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    #: Who speaks the lines (after a switch, the new persona).
    persona: str | None = None
    #: Continue to the LLM after the lines (e.g. reassurance first, then an answer).
    then_llm: bool = False
    #: Why, for the log.
    reason: str = ""


class Responder(Protocol):
    def respond(self, turn: UserTurnReady, session: Session) -> Scripted | None: ...


def contains_phrase(text: str, phrases: list[str]) -> bool:
    said = normalise_phrase(text)
    return any(normalise_phrase(p) and normalise_phrase(p) in said for p in phrases)


def pick(lines: list[str], rng: random.Random | None = None) -> str | None:
    if not lines:
        return None
    return (rng or random).choice(lines)


class PersonaSwitch:
    """「美遊に代わって」 / "switch to Yuuri": hands the conversation to another persona, who greets."""

    def __init__(self, personas: Mapping[str, PersonaConfig], rng: random.Random | None = None) -> None:
        self._personas = personas
        self._rng = rng

    def target(self, text: str) -> PersonaConfig | None:
        for persona in self._personas.values():
            phrases = [*persona.switch_phrases]
            if phrases and contains_phrase(text, phrases):
                return persona
        return None

    def respond(self, turn: UserTurnReady, session: Session) -> Scripted | None:
        target = self.target(turn.text)
        if target is None:
            return None
        if target.id == session.persona.id:
            line = pick(target.lines.get("already_here", []), self._rng) or pick(target.lines.get("switched_in", []), self._rng)
            return Scripted(lines=[line] if line else [], persona=target.id, reason="already speaking")
        line = pick(target.lines.get("switched_in", []), self._rng)
        return Scripted(lines=[line] if line else [], events=[SetPersona(persona=target.id)], persona=target.id,
                        reason=f"switch to {target.id}")


