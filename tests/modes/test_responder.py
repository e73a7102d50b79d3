"""The bedtime responder: which words enter, leave, get a good-night line or comfort, and what sleep hears."""

from __future__ import annotations

import pytest

from assistant.config.schema import BedtimeConfig, PersonaConfig
from assistant.conversation.responders import Session
from assistant.events import SetMode, Sleeping, UserTurnReady, WakeRequest
from assistant.modes.bedtime import BedtimeResponder


def turn(text: str, emotion: str | None = None) -> UserTurnReady:
    return UserTurnReady(turn_id=1, text=text, language="en", emotion=emotion, emotion_score=0.9 if emotion else 0.0)


@pytest.fixture
def responder(personas: dict[str, PersonaConfig], bedtime_cfg: BedtimeConfig) -> BedtimeResponder:
    return BedtimeResponder(personas, bedtime_cfg)


@pytest.mark.parametrize("said", ["おやすみモードにして", "そろそろ寝るね。", "Bedtime mode, please.", "It's time for bed"])
def test_an_enter_phrase_in_any_language_enters_bedtime(responder: BedtimeResponder, night_persona: PersonaConfig,
                                                        said: str) -> None:
    scripted = responder.respond(turn(said), Session(night_persona, "normal"))
    assert scripted is not None
    assert scripted.lines == night_persona.bedtime.entering
    assert scripted.events == [SetMode(value="bedtime")]
    assert not scripted.then_llm


def test_normal_talk_is_left_to_others(responder: BedtimeResponder, night_persona: PersonaConfig) -> None:
    for said in ("good morning", "おはよう", "good night", "I feel awful"):
        assert responder.respond(turn(said), Session(night_persona, "normal")) is None
    # A sad voice outside bedtime is the LLM's to answer (the prompt says how the user sounds).
    assert responder.respond(turn("I feel awful", "sad"), Session(night_persona, "normal")) is None


@pytest.mark.parametrize("said", ["おはよう", "通常モードに戻して", "Good morning!", "normal mode"])
def test_an_exit_phrase_leaves_bedtime(responder: BedtimeResponder, night_persona: PersonaConfig, said: str) -> None:
    scripted = responder.respond(turn(said), Session(night_persona, "bedtime"))
    assert scripted is not None
    assert scripted.lines == night_persona.bedtime.leaving
    assert scripted.events == [SetMode(value="normal")]


def test_good_night_gets_a_line_at_once_without_the_llm(responder: BedtimeResponder,
                                                         night_persona: PersonaConfig) -> None:
    for said in ("Good night.", "おやすみなさい"):
        scripted = responder.respond(turn(said), Session(night_persona, "bedtime"))
        assert scripted is not None and scripted.lines == night_persona.bedtime.good_night
        assert not scripted.then_llm and not scripted.events


@pytest.mark.parametrize("emotion", ["sad", "fearful"])
def test_a_sad_or_fearful_voice_gets_reassurance_first_then_the_llm(responder: BedtimeResponder,
                                                                      night_persona: PersonaConfig,
                                                                      emotion: str) -> None:
    scripted = responder.respond(turn("I keep thinking about today", emotion), Session(night_persona, "bedtime"))
    assert scripted is not None
    assert scripted.lines == night_persona.bedtime.reassurance
    assert scripted.then_llm
    # A calm or happy voice is the LLM's alone.
    assert responder.respond(turn("I keep thinking about today", "happy"), Session(night_persona, "bedtime")) is None


def test_a_sad_good_night_is_comforted_and_wished_good_night(responder: BedtimeResponder,
                                                              night_persona: PersonaConfig) -> None:
    scripted = responder.respond(turn("good night", "sad"), Session(night_persona, "bedtime"))
    assert scripted is not None
    assert scripted.lines == [*night_persona.bedtime.reassurance, *night_persona.bedtime.good_night]
    assert not scripted.then_llm


def test_asleep_only_a_wake_phrase_is_answered(responder: BedtimeResponder, night_persona: PersonaConfig) -> None:
    responder.observe(Sleeping(is_asleep=True))  # the bedtime stage put it to sleep
    session = Session(night_persona, "bedtime")
    for said, emotion in [("bedtime mode", None), ("good night", None), ("normal mode", None), ("switch to miyu", None),
                          ("I am scared", "fearful"), ("hello?", None)]:
        scripted = responder.respond(turn(said, emotion), session)
        assert scripted is not None and scripted.lines == [] and scripted.events == [], said
        assert scripted.reason == "asleep" and not scripted.then_llm
        assert responder.is_asleep
    woken = responder.respond(turn("Wake up"), session)
    assert woken is not None
    assert woken.events == [WakeRequest()]  # still bedtime: only awake again
    assert woken.lines == night_persona.bedtime.presence
    # Sleep is the bedtime stage's to end: the responder is awake once the stage says so.
    assert responder.is_asleep
    responder.observe(Sleeping(is_asleep=False))
    assert not responder.is_asleep


def test_good_morning_wakes_and_ends_the_night(responder: BedtimeResponder, night_persona: PersonaConfig) -> None:
    responder.observe(Sleeping(is_asleep=True))  # the bedtime stage put it to sleep
    woken = responder.respond(turn("おはよう"), Session(night_persona, "bedtime"))
    assert woken is not None
    assert woken.events == [WakeRequest(), SetMode(value="normal")]
    assert woken.lines == night_persona.bedtime.leaving
