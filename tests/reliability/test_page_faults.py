"""Pages come and go under a running voice conversation (the real Live2D bridge, real models): a page that drops
its socket while the reply's audio streams to it, or while its own microphone is open, changes nothing for
the conversation or for the other pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.config import load_settings
from assistant.events import Error, Event, TurnDone
from assistant.pipeline.assemble import Conversation, Options
from tests.reliability.conftest import edit_yaml, english_speech, open_page, use_fast_voices, with_silence

pytestmark = pytest.mark.slow


@pytest.fixture
def voice_config(quiet_config: Path) -> Path:
    """English speech in (Whisper tiny.en), short replies from the embedded model, the fast Piper voice out."""
    use_fast_voices(quiet_config)
    edit_yaml(quiet_config / "profiles" / "cpu.yaml", {
        "assistant": {"asr": {"model": "offline:whisper-tiny.en", "language": "en"}},
        "routing": {"engines": {"AI_2": {"kind": "embedded", "model": "offline:gemma3-270m",
                                         "generation": {"max_tokens": 24}}}},
    })
    return quiet_config


def _is_audio(message: dict[str, Any]) -> bool:
    return message["type"] == "audio"


def _is_listening(message: dict[str, Any]) -> bool:
    return message["type"] == "state" and message["value"] == "listening"


async def test_a_page_that_drops_mid_audio_leaves_the_turn_and_the_other_page_untouched(
        voice_config: Path, hello_speech: np.ndarray) -> None:
    settings = load_settings(voice_config, "cpu")
    errors: list[Event] = []
    conversation = Conversation(settings, Options(persona="yuuri", input="browser", output="browser"))
    conversation.bus.subscribe(lambda e: errors.append(e) if isinstance(e, Error) else None)
    async with conversation:
        bridge = conversation.bridge
        assert bridge is not None
        a, b = await open_page(bridge.ws_url, "a"), await open_page(bridge.ws_url, "b")

        # Page A speaks; the reply's audio starts streaming to both pages; A vanishes in the middle of it.
        await a.speak(with_silence(0.3, hello_speech, 1.2))
        first_audio = await a.wait_for(_is_audio)
        turn = first_audio["turn_id"]
        assert first_audio.get("wav"), "the page got audio without its sound"
        a.drop()
        await a.reader

        # The turn plays out and ends for everyone still there.
        result = await conversation.wait_turn(turn, timeout=120)
        assert result.errors == [] and not result.is_interrupted and result.sentences
        b_audio = next(i for i, m in enumerate(b.messages) if _is_audio(m) and m["turn_id"] == turn)
        await b.wait_for(_is_listening, timeout=60, after=b_audio)
        assert [m["sentence_index"] for m in b.of_type("audio", turn)] == list(range(len(result.sentences)))
        assert [m["text"] for m in b.of_type("subtitle", turn)] == result.sentences
        assert bridge.page_count == 1

        # B takes the microphone the vanished page held, and is heard and answered.
        await b.speak(with_silence(0.3, english_speech("What a nice day."), 1.2))
        next_audio = await b.wait_for(lambda m: _is_audio(m) and m["turn_id"] > turn)
        second = await conversation.wait_turn(next_audio["turn_id"], timeout=120)
        assert second.heard and second.sentences and second.errors == []
        # A page that comes back later is greeted with the current state.
        c = await open_page(bridge.ws_url, "c")
        hello = c.messages[0]
        assert hello["persona"] == "yuuri" and hello["state"] in ("listening", "speaking", "thinking")
        for page in (b, c):
            await page.ws.close()
            await page.reader
    assert errors == [], errors


async def test_a_page_that_drops_mid_utterance_ends_its_speech_and_others_go_on(
        voice_config: Path, hello_speech: np.ndarray) -> None:
    settings = load_settings(voice_config, "cpu")
    done: list[TurnDone] = []
    errors: list[Error] = []
    conversation = Conversation(settings, Options(persona="yuuri", input="browser", output="browser"))
    conversation.bus.subscribe(lambda e: done.append(e) if isinstance(e, TurnDone) else None)
    conversation.bus.subscribe(lambda e: errors.append(e) if isinstance(e, Error) else None)
    async with conversation:
        bridge = conversation.bridge
        assert bridge is not None
        a, b = await open_page(bridge.ws_url, "a"), await open_page(bridge.ws_url, "b")
        # A says most of a sentence and is gone before the pause that would end it.
        await a.speak(with_silence(0.3, hello_speech))
        await b.wait_for(lambda m: m["type"] == "user-speech-started")
        a.drop()
        await a.reader
        # What A said up to the drop is a turn (the input ended): heard and answered, or dropped, never stuck.
        ended = await b.wait_for(lambda m: m["type"] == "user-speech-ended", timeout=60)
        await b.wait_for(_is_listening, timeout=120, after=b.messages.index(ended))
        # B speaks next and is answered.
        await b.speak(with_silence(0.3, english_speech("Good evening, my friend."), 1.2))
        answered = await b.wait_for(lambda m: m["type"] == "subtitle" and m["turn_id"] > ended["turn_id"])
        result = await conversation.wait_turn(answered["turn_id"], timeout=120)
        assert "evening" in result.heard.lower() and result.sentences
        await b.ws.close()
        await b.reader
    assert errors == [], errors
