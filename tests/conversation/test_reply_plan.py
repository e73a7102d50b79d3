"""Choosing who answers: the first responder that answers wins, a switch hands the lines to the new persona,
reassurance comes before the model, and a turn no responder takes goes to the model."""

from __future__ import annotations

import random

from assistant.config.loader import Settings
from assistant.conversation.reply_plan import plan_reply
from assistant.conversation.responders import PersonaSwitch, Responder
from assistant.events import SetMode, SetPersona, UserTurnReady
from assistant.modes.bedtime import BedtimeResponder


def turn(text: str, emotion: str | None = None) -> UserTurnReady:
    return UserTurnReady(turn_id=3, text=text, emotion=emotion, emotion_score=0.9 if emotion else 0.0)


def test_a_turn_no_responder_takes_goes_to_the_model_as_the_session_persona(settings: Settings) -> None:
    yuuri = settings.personas["yuuri"]
    responders: list[Responder] = [BedtimeResponder(settings.personas, settings.assistant.bedtime),
                                   PersonaSwitch(settings.personas)]
    plan = plan_reply(turn("今日は何してた？"), yuuri, "normal", responders, settings.personas)
    assert plan.speaker is yuuri and plan.asks_model
    assert not plan.is_scripted and plan.lines == () and plan.events == ()
    assert plan_reply(turn("こんにちは"), yuuri, "normal", [], settings.personas).asks_model  # no responders at all


def test_a_switch_hands_the_reply_to_the_new_persona_who_greets_without_the_model(settings: Settings) -> None:
    yuuri, miyu = settings.personas["yuuri"], settings.personas["miyu"]
    plan = plan_reply(turn("美遊に代わって"), yuuri, "normal", [PersonaSwitch(settings.personas, random.Random(1))],
                      settings.personas)
    assert plan.is_scripted and not plan.asks_model
    assert plan.speaker is miyu
    assert plan.events == (SetPersona(persona="miyu"),)
    assert len(plan.lines) == 1 and plan.lines[0] in miyu.lines["switched_in"]
    assert "miyu" in plan.reason


def test_asking_for_the_persona_already_speaking_is_answered_by_her_without_a_switch(settings: Settings) -> None:
    miyu = settings.personas["miyu"]
    plan = plan_reply(turn("switch to Miyu"), miyu, "normal", [PersonaSwitch(settings.personas)], settings.personas)
    assert plan.speaker is miyu and plan.events == () and not plan.asks_model
    assert plan.lines and plan.lines[0] in miyu.lines["switched_in"]


def test_the_first_responder_that_answers_wins(settings: Settings) -> None:
    yuuri, miyu = settings.personas["yuuri"], settings.personas["miyu"]
    bedtime = BedtimeResponder(settings.personas, settings.assistant.bedtime)
    switch = PersonaSwitch(settings.personas)
    said = turn("美遊に代わって、もう寝るね")  # a switch phrase and a bedtime phrase at once
    first_bedtime = plan_reply(said, yuuri, "normal", [bedtime, switch], settings.personas)
    assert first_bedtime.events == (SetMode(value="bedtime"),) and first_bedtime.speaker is yuuri
    assert list(first_bedtime.lines) == yuuri.bedtime.entering
    first_switch = plan_reply(said, yuuri, "normal", [switch, bedtime], settings.personas)
    assert first_switch.events == (SetPersona(persona="miyu"),) and first_switch.speaker is miyu


def test_a_frightened_voice_at_bedtime_gets_reassurance_then_the_model(settings: Settings) -> None:
    miyu = settings.personas["miyu"]
    bedtime = BedtimeResponder(settings.personas, settings.assistant.bedtime)
    plan = plan_reply(turn("こわい夢を見たの", "fearful"), miyu, "bedtime", [bedtime], settings.personas)
    assert plan.is_scripted and plan.asks_model and plan.speaker is miyu
    assert plan.lines and all(line in miyu.bedtime.reassurance for line in plan.lines)
    # The same words in a calm voice, or outside bedtime, are the model's alone.
    assert not plan_reply(turn("こわい夢を見たの"), miyu, "bedtime", [bedtime], settings.personas).is_scripted
    assert not plan_reply(turn("こわい夢を見たの", "fearful"), miyu, "normal", [bedtime], settings.personas).is_scripted
