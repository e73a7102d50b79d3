"""The session is the one owner of the persona: Speaker is said only by it — at start and for every switch
request, at once (SetPersona is urgent) — and an unknown persona is one line for a person."""

from __future__ import annotations

from assistant.config.loader import Settings
from assistant.conversation.session import SessionStage
from assistant.events import Error, Mode, SetMode, SetPersona, Speaker
from assistant.stage import run_stage


async def test_the_session_announces_its_persona_at_start_and_after_each_switch(settings: Settings) -> None:
    remembered: list[tuple[str, str]] = []
    session = SessionStage(settings.personas, "yuuri", remember=lambda persona, mode: remembered.append((persona, mode)))
    assert SetPersona in session.urgent  # a switch by voice is announced before the new persona's greeting
    out = await run_stage(session, [SetPersona(persona="miyu"), SetPersona(persona="miyu"), SetPersona(persona="nobody"),
                                    SetMode(value="bedtime")])
    assert out[:4] == [Speaker(persona="yuuri", display_name="悠璃"), Mode(value="normal"),
                       Speaker(persona="miyu", display_name="美遊"), Speaker(persona="miyu", display_name="美遊")]
    error = out[4]
    assert isinstance(error, Error) and "nobody" in error.message and "miyu" in error.message
    assert out[5:] == [Mode(value="bedtime")]
    assert session.persona_id == "miyu" and remembered == [("miyu", "normal"), ("miyu", "bedtime")]
