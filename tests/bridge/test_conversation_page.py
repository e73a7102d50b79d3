"""Text typed into the page gets a reply through the real pipeline (the embedded llama.cpp engine of the cpu
profile), and everything the pipeline sends the page passes the protocol's schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from assistant.config.loader import load_settings
from assistant.pipeline.assemble import Conversation, Options
from tests.fixtures.bridge import RECORD_JS, SentLog, open_page

pytestmark = pytest.mark.browser


async def test_text_typed_into_the_page_gets_a_spoken_turn_shown(config_dir: Path, browser: Any,
                                                                bridge_sent: SentLog) -> None:
    settings = load_settings(config_dir, "cpu")
    settings.assistant.bridge.port = 0
    async with Conversation(settings, Options(with_bridge=True, use_memory=False)) as conversation:
        page, errors = await open_page(browser, conversation.bridge.url)  # type: ignore[attr-defined]
        await page.fill("#text", "こんにちは")
        await page.press("#text", "Enter")
        # The user's line is confirmed by the pipeline's transcript, the reply arrives as subtitles.
        await page.wait_for_selector(".bubble.user:not(.pending)", timeout=120000)
        await page.wait_for_selector(".bubble.assistant .sentence", timeout=120000)
        await page.wait_for_function("() => saijin.state === 'listening' && saijin.received.subtitle > 0",
                                     timeout=120000)
        reply = await page.locator(".bubble.assistant .text").inner_text()
        turn = conversation.results[-1]
        assert turn.heard == "こんにちは" and turn.sentences
        assert reply == "".join(turn.sentences)
        assert await page.locator("#caption-text").inner_text() == turn.sentences[-1]
        assert errors.errors == []
    sent = bridge_sent.types()
    assert {"hello", "user-transcript", "state", "subtitle", "latency"} <= set(sent)


async def test_a_spoken_reply_plays_in_the_page_with_a_moving_mouth(config_dir: Path, browser: Any,
                                                                   bridge_sent: SentLog) -> None:
    settings = load_settings(config_dir, "cpu")
    settings.assistant.bridge.port = 0
    options = Options(with_bridge=True, use_memory=False, output="browser")
    async with Conversation(settings, options) as conversation:
        page, errors = await open_page(browser, conversation.bridge.url)  # type: ignore[attr-defined]
        await page.evaluate(RECORD_JS)
        await page.fill("#text", "こんにちは")
        await page.press("#text", "Enter")
        await page.wait_for_function("() => saijin.playback.some(p => p.type === 'playback-finished')", timeout=180000)
        frames = await page.evaluate("() => window.__saijinRecord")
        reports = await page.evaluate("() => saijin.playback")
        assert reports[0]["type"] == "playback-started" and reports[0]["level"] > 0.01
        assert reports[1]["type"] == "playback-finished" and reports[1]["played_s"] > 0.3
        assert max(f["mouth"] for f in frames if f["playing"]) > 0.3
        assert errors.errors == []
    audio = [json.loads(t) for t in bridge_sent.texts if t.startswith('{"type":"audio"')]
    assert audio and audio[0]["wav"] and audio[0]["mouth"]
