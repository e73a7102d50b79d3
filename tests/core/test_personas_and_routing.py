"""Personas and routing through a real conversation: switching by voice text and by the page, remembered on
the next start; an engine refusing connections hands over to the next one (the embedded model), told once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from assistant.config import load_settings
from assistant.events import Event, Notice, SetPersona, Speaker
from assistant.pipeline.assemble import Conversation, Options

pytestmark = pytest.mark.slow


def _small_replies(config_dir: Path) -> None:
    path = config_dir / "routing.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["engines"]["AI_2"]["generation"]["max_tokens"] = 16
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


async def test_switching_persona_by_voice_and_by_page_is_remembered(config_dir: Path) -> None:
    pytest.importorskip("llama_cpp")
    _small_replies(config_dir)
    settings = load_settings(config_dir, "cpu")
    speakers: list[str] = []

    def watch(event: Event) -> None:
        if isinstance(event, Speaker):
            speakers.append(event.persona)

    async with Conversation(settings, Options(persona="yuuri")) as conversation:
        conversation.bus.subscribe(watch)
        switched = await conversation.say("美遊に代わって", timeout=120)
        assert switched.persona == "miyu"
        assert switched.sentences[0] in settings.personas["miyu"].lines["switched_in"]  # at once, no LLM
        answered = await conversation.say("今日は何してた？", timeout=120)
        assert answered.persona == "miyu" and answered.sentences
        conversation.emit(SetPersona(persona="yuuri"))  # the page's persona picker
        await conversation.pipeline.wait_idle()
        english = await conversation.say("switch to Miyu", timeout=120)
        assert english.persona == "miyu"
    assert "miyu" in speakers and "yuuri" in speakers

    # The next start begins with the persona chosen last.
    async with Conversation(load_settings(config_dir, "cpu"), Options()) as again:
        assert again.persona_id == "miyu"


async def test_an_engine_refusing_connections_hands_over_to_the_next_and_says_so_once(config_dir: Path) -> None:
    pytest.importorskip("llama_cpp")
    _small_replies(config_dir)
    path = config_dir / "routing.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["engines"]["AI_1"] = {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "down", "timeout_s": 5}
    data["personas"] = {"yuuri": "AI_1", "miyu": "AI_1"}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    profile = config_dir / "profiles" / "cpu.yaml"
    overlay = yaml.safe_load(profile.read_text(encoding="utf-8"))
    overlay["routing"] = {"default": "AI_1", "fallback": ["AI_1", "AI_2"]}
    profile.write_text(yaml.safe_dump(overlay, allow_unicode=True), encoding="utf-8")
    settings = load_settings(config_dir, "cpu")
    assert settings.routing.chain_for("yuuri") == ["AI_1", "AI_2"]
    notices: list[str] = []
    async with Conversation(settings, Options(persona="yuuri")) as conversation:
        conversation.bus.subscribe(lambda e: notices.append(e.message) if isinstance(e, Notice) else None)
        first = await conversation.say("こんにちは", timeout=120)
        second = await conversation.say("元気？", timeout=120)
    assert first.sentences and second.sentences and not first.errors and not second.errors
    assert len(notices) == 1 and "AI_1" in notices[0]
