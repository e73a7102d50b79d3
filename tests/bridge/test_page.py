"""The page in a real browser (Debian's Chromium via Playwright) with the built-in avatar: personas,
a scripted turn (subtitles, the user's emotion, expressions, audio with a moving mouth), states, controls,
the microphone, reconnecting. Screenshots land in docs/screenshots/."""

from __future__ import annotations

import asyncio
import re
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.audio.lipsync import mouth_values
from assistant.events import (
    Audio,
    Expression,
    InputEnded,
    Interrupted,
    InterruptRequest,
    Latency,
    Mode,
    PlaybackFinished,
    PlaybackStarted,
    SetMode,
    SetPersona,
    Speaker,
    State,
    Subtitle,
    TextInput,
    UserEmotion,
    UserSpeechEnded,
    UserSpeechStarted,
    UserTranscript,
)
from tests.fixtures.bridge import (
    CHROMIUM,
    CHROMIUM_ARGS,
    BridgeHarness,
    MakeBridge,
    open_page,
    record_frames,
    screenshot,
)

pytestmark = pytest.mark.browser

REPLY = ["今日も一日、本当にお疲れさまでした。", "ゆっくり休んでくださいね。"]


@pytest.fixture(scope="module")
def reply_speech(request: pytest.FixtureRequest) -> list[np.ndarray]:
    """Real Japanese speech (Kokoro, cached on disk) for the two reply sentences, 16 kHz."""
    maker = request.getfixturevalue("speech_maker")
    return [maker.japanese(text).samples for text in REPLY]


def tone_bursts(pattern: list[tuple[float, float]], rate: int = 24000) -> tuple[np.ndarray, tuple[float, ...]]:
    """A WAV-able signal of (seconds, loudness) parts and its mouth values (one per 20 ms)."""
    parts = []
    for seconds, loudness in pattern:
        t = np.arange(int(seconds * rate)) / rate
        parts.append((np.sin(2 * np.pi * 220 * t) * loudness).astype(np.float32))
    samples = np.concatenate(parts)
    return samples, mouth_values(samples, rate)


async def test_the_page_connects_and_shows_the_personas(make_bridge: MakeBridge, browser: Any) -> None:
    bridge = await make_bridge()
    page, errors = await open_page(browser, bridge.server.url)
    cards = page.locator(".persona-card")
    assert await cards.count() == 2
    assert await cards.nth(0).locator(".name").inner_text() == "悠璃"
    assert "ゆっくり話を聞いて" in await cards.nth(0).locator(".desc").inner_text()
    assert await cards.nth(1).locator(".name").inner_text() == "美遊"
    assert await cards.nth(0).get_attribute("aria-current") == "true"
    state = await page.evaluate("() => ({kind: saijin.avatarKind, version: saijin.hello.protocol_version,"
                                " accent: getComputedStyle(document.documentElement).getPropertyValue('--accent').trim()})")
    assert state == {"kind": "builtin", "version": 1, "accent": "#7aa2f7"}
    assert await page.locator(".builtin-avatar").is_visible()
    assert await page.locator("#state-text").inner_text() == "聞いています"
    await page.wait_for_timeout(400)
    await screenshot(page, "builtin-listening.png")
    assert errors.errors == []


async def test_a_scripted_turn_shows_subtitles_emotion_expression_and_moves_the_mouth(
        make_bridge: MakeBridge, browser: Any, reply_speech: list[np.ndarray]) -> None:
    bridge = await make_bridge()
    page, errors = await open_page(browser, bridge.server.url)
    bridge.publish(UserSpeechStarted(turn_id=1, onset=1.0))
    await page.wait_for_selector(".bubble.user.listening")
    bridge.publish(UserSpeechEnded(turn_id=1, onset=1.0, speech_end=2.4, decided_at=2.7),
                   UserTranscript(turn_id=1, text="今日はちょっと疲れちゃった", language="ja"),
                   UserEmotion(turn_id=1, label="sad", score=0.82, scores={"sad": 0.82, "neutral": 0.18},
                               is_calibrated=True),
                   State(value="thinking"))
    await page.wait_for_function("() => document.body.classList.contains('state-thinking')")
    assert await page.locator(".bubble.user .text").inner_text() == "今日はちょっと疲れちゃった"
    assert await page.locator("#emotion-label").inner_text() == "かなしそう"
    assert await page.locator("#emotion-score").inner_text() == "82%"
    assert await page.locator("#state-text").inner_text() == "考えています…"
    await page.wait_for_function("() => getComputedStyle(document.querySelector('.thinking-bubble')).opacity > 0.9")

    bridge.publish(Speaker(persona="yuuri", display_name="悠璃"), Expression(persona="yuuri", name="joy", turn_id=1))
    await page.wait_for_function("() => document.querySelector('.builtin-avatar').dataset.expression === 'happy'")
    for i, text in enumerate(REPLY):
        bridge.publish(Subtitle(turn_id=1, persona="yuuri", sentence_index=i, text=text))
    bridge.publish(State(value="speaking"))
    for i, speech in enumerate(reply_speech):
        bridge.publish(Audio(turn_id=1, sentence_index=i, sample_rate=16000, samples=speech,
                             mouth=mouth_values(speech, 16000), text=REPLY[i]))
    await page.wait_for_function("() => saijin.isPlaying", timeout=10000)
    await page.wait_for_function("() => saijin.mouth > 0.3", timeout=5000)
    assert await page.locator("#caption-text").inner_text() == REPLY[0]
    await screenshot(page, "builtin-speaking.png")
    total = sum(len(s) for s in reply_speech) / 16000
    samples = await record_frames(page, total + 1.2)
    playing = [s for s in samples if s["playing"]]
    after = [s for s in samples if not s["playing"]][-5:]
    assert len(playing) > 30
    assert max(s["mouth"] for s in playing) > 0.5
    assert len({round(s["mouth"], 2) for s in playing}) > 8, "the mouth does not move while audio plays"
    assert all(s["mouth"] == 0 and s["dom"] == 0 for s in after), "the mouth does not rest after the audio"
    assert await page.locator("#caption-text").inner_text() == REPLY[1]
    # The page reported its playback of both sentences, with how long each played.
    finished = await bridge.wait_input(PlaybackFinished, lambda e: e.sentence_index == 1)
    started = bridge.of_type(PlaybackStarted)
    assert [(e.turn_id, e.sentence_index) for e in started] == [(1, 0), (1, 1)]
    assert all(e.level > 0.01 for e in started)
    durations = [len(s) / 16000 for s in reply_speech]
    assert abs(finished.played_s - durations[1]) < 0.05
    assert bridge.of_type(PlaybackFinished)[0].at <= started[1].at + 0.2
    bridge.publish(State(value="listening"), Latency(turn_id=1, stages_ms={"asr": 80.0}, voice_to_voice_ms=612.4))
    await page.wait_for_function("() => document.body.classList.contains('state-listening')")
    assert await page.locator("#latency").inner_text() == "応答 612 ms"
    assert await page.locator(".bubble.assistant .sentence").all_inner_texts() == REPLY
    assert errors.errors == []


async def test_the_mouth_follows_the_audio_it_plays_in_time(make_bridge: MakeBridge, browser: Any) -> None:
    """Loud, silent, loud: the mouth value at each moment matches the part of the audio being heard."""
    bridge = await make_bridge()
    page, errors = await open_page(browser, bridge.server.url)
    pattern = [(0.6, 0.8), (0.6, 0.0), (0.6, 0.8)]
    samples, mouth = tone_bursts(pattern)
    bridge.publish(Audio(turn_id=3, sentence_index=0, sample_rate=24000, samples=samples, mouth=mouth))
    await page.wait_for_function("() => saijin.isPlaying", timeout=10000)
    readings = await record_frames(page, 2.2)
    checked = 0
    for r in readings:
        head = r["head"]
        if not head or head["duration"] < 1.7:
            continue
        t = head["t"]
        edge = min(abs(t - 0.6), abs(t - 1.2))
        if edge < 0.08 or t < 0.05 or t > 1.75:
            continue  # near a step the smoothing is in between
        expected_open = t < 0.6 or t > 1.2
        assert (r["player"] > 0.5) == expected_open, f"at {t:.2f} s the player mouth is {r['player']}"
        checked += 1
    assert checked > 30
    assert readings[-1]["mouth"] == 0 and not readings[-1]["playing"]
    assert errors.errors == []


async def test_interrupting_stops_the_audio_and_reports_what_was_heard(
        make_bridge: MakeBridge, browser: Any) -> None:
    bridge = await make_bridge()
    page, errors = await open_page(browser, bridge.server.url)
    samples, mouth = tone_bursts([(3.0, 0.7)])
    bridge.publish(State(value="speaking"), Subtitle(turn_id=5, persona="yuuri", sentence_index=0, text="長いお話です。"),
                   Audio(turn_id=5, sentence_index=0, sample_rate=24000, samples=samples, mouth=mouth))
    await page.wait_for_function("() => saijin.isPlaying && saijin.playhead.t > 0.5", timeout=10000)
    await page.click("#interrupt")
    await bridge.wait_input(InterruptRequest)
    finished = await bridge.wait_input(PlaybackFinished)
    assert 0.4 < finished.played_s < 2.0
    await page.wait_for_function("() => !saijin.isPlaying && saijin.mouth === 0", timeout=2000)
    # The server's interrupted marks the reply as cut; later audio of that turn is ignored.
    bridge.publish(Interrupted(turn_id=5),
                   Audio(turn_id=5, sentence_index=1, sample_rate=24000, samples=samples, mouth=mouth))
    await page.wait_for_selector(".bubble.assistant.cut")
    await page.wait_for_timeout(500)
    assert not await page.evaluate("() => saijin.isPlaying")
    assert errors.errors == []


async def test_typed_text_persona_and_mode_controls_reach_the_server(make_bridge: MakeBridge, browser: Any) -> None:
    bridge = await make_bridge()
    page, errors = await open_page(browser, bridge.server.url)
    await page.fill("#text", "こんばんは、元気？")
    await page.press("#text", "Enter")
    assert (await bridge.wait_input(TextInput)).text == "こんばんは、元気？"
    assert await page.input_value("#text") == ""
    assert await page.locator(".bubble.user.pending .text").inner_text() == "こんばんは、元気？"
    bridge.publish(UserTranscript(turn_id=8, text="こんばんは、元気？"))
    await page.wait_for_selector(".bubble.user:not(.pending)")
    assert await page.locator(".bubble.user").count() == 1

    await page.click(".persona-card[data-persona=miyu]")
    assert (await bridge.wait_input(SetPersona)).persona == "miyu"
    bridge.publish(Speaker(persona="miyu", display_name="美遊"))
    await page.wait_for_function(
        "() => getComputedStyle(document.documentElement).getPropertyValue('--accent').trim() === '#f7768e'")
    assert await page.get_attribute(".persona-card[data-persona=miyu]", "aria-current") == "true"

    await page.click("#mode-toggle")
    assert (await bridge.wait_input(SetMode)).value == "bedtime"
    bridge.publish(Mode(value="bedtime"), State(value="sleeping"))
    await page.wait_for_function("() => document.body.classList.contains('mode-bedtime')"
                                 " && document.body.classList.contains('state-sleeping')")
    assert await page.get_attribute("#mode-toggle", "aria-pressed") == "true"
    assert await page.locator("#state-text").inner_text() == "おやすみ中"
    await page.wait_for_timeout(1500)  # eyes close and the page dims
    avatar = await page.evaluate(
        "() => ({filter: getComputedStyle(document.querySelector('.avatar')).filter,"
        " eyesOpen: [...document.querySelectorAll('.av-eye > g')].some(g => g.style.display !== 'none'),"
        " zzz: getComputedStyle(document.querySelector('.zzz')).opacity})")
    brightness = float(re.search(r"brightness\(([0-9.]+)\)", avatar["filter"]).group(1))
    assert brightness < 0.55 and not avatar["eyesOpen"] and avatar["zzz"] == "1"
    await screenshot(page, "builtin-sleeping.png")
    assert errors.errors == []


async def test_every_canonical_emotion_has_its_own_face(make_bridge: MakeBridge, browser: Any) -> None:
    bridge = await make_bridge()
    page, errors = await open_page(browser, bridge.server.url)
    faces: dict[str, str] = {}
    for name in ("neutral", "happy", "sad", "angry", "fearful", "surprised", "disgusted", "calm"):
        bridge.publish(Expression(persona="yuuri", name=name))
        await page.wait_for_function(f"() => document.querySelector('.builtin-avatar').dataset.expression === '{name}'")
        await page.wait_for_timeout(700)  # the face eases into its new shape
        faces[name] = await page.evaluate(
            "() => [...document.querySelectorAll('.av-brow, .av-mouth, .av-eye path')].map(e => e.getAttribute('d')).join('|')")
    assert len(set(faces.values())) == len(faces), "two emotions share a face"
    bridge.publish(Expression(persona="yuuri", name="relaxed"))  # a tag from rules.yaml
    await page.wait_for_function("() => document.querySelector('.builtin-avatar').dataset.expression === 'calm'")
    assert errors.errors == []


async def test_the_microphone_streams_16_khz_pcm(make_bridge: MakeBridge, tmp_path: Path) -> None:
    """Chromium's fake capture device plays a 440 Hz WAV; the server receives it as 16 kHz audio frames."""
    from playwright.async_api import async_playwright

    wav = tmp_path / "tone.wav"
    rate = 48000
    t = np.arange(rate * 3) / rate
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.sin(2 * np.pi * 440 * t) * 0.5 * 32767).astype("<i2").tobytes())
    bridge = await make_bridge()
    args = [*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}"]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            page, errors = await open_page(browser, bridge.server.url, permissions=["microphone"])
            await page.click("#mic")
            await page.wait_for_function("() => saijin.micOpen === true", timeout=10000)
            from assistant.events import AudioFrame

            deadline = asyncio.get_running_loop().time() + 15
            while sum(len(f.samples) for f in bridge.of_type(AudioFrame)) < 16000 * 1.5:
                assert asyncio.get_running_loop().time() < deadline, "no microphone audio arrived"
                await asyncio.sleep(0.1)
            await page.click("#mic")
            await bridge.wait_input(InputEnded)
        finally:
            await browser.close()
    frames = bridge.of_type(AudioFrame)
    assert all(f.sample_rate == 16000 and len(f.samples) == 640 for f in frames)
    audio = np.concatenate([f.samples for f in frames])[8000:]  # skip the start-up
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    peak_hz = np.argmax(spectrum) * 16000 / len(audio)
    assert abs(peak_hz - 440) < 5, f"the microphone's tone arrived at {peak_hz:.1f} Hz"
    # Noise suppression is on (as for a real microphone), so a steady tone arrives quieter than it went in.
    assert 0.02 < np.sqrt(np.mean(audio ** 2)) < 0.5
    assert errors.errors == []


async def test_the_page_reconnects_when_the_server_comes_back(make_bridge: MakeBridge, browser: Any,
                                                              bridge_personas: list) -> None:
    bridge = await make_bridge()
    page, errors = await open_page(browser, bridge.server.url)
    port = bridge.server.port
    await bridge.server.stop()
    await page.wait_for_function("() => !saijin.connected", timeout=5000)
    assert await page.get_attribute("#conn", "data-status") == "closed"
    again = await make_bridge(port=port)
    again.publish(State(value="thinking"))
    await page.wait_for_function("() => saijin.connected && saijin.helloCount === 2", timeout=15000)
    assert await page.evaluate("() => saijin.state") == "thinking"
    assert [e for e in errors.errors if "WebSocket" not in e] == []


async def test_the_server_answers_a_page_that_sends_garbage(make_bridge: MakeBridge, browser: Any) -> None:
    """A page-side client sending bad messages gets errors shown, and keeps working."""
    bridge: BridgeHarness = await make_bridge()
    page, _errors = await open_page(browser, bridge.server.url)
    await page.evaluate("""() => {
        const ws = new WebSocket(`ws://${location.host}/ws`);
        window.replies = [];
        ws.onmessage = (e) => window.replies.push(JSON.parse(e.data));
        ws.onopen = () => { ws.send('{"type":"nope"}'); ws.send('{]'); ws.send(JSON.stringify({type: 'ping', id: 1})); };
    }""")
    await page.wait_for_function("() => window.replies.length >= 4")
    replies = await page.evaluate("() => window.replies.map(r => r.code || r.type)")
    assert replies == ["hello", "unknown-type", "bad-json", "pong"]


#: Headless Chromium lets every AudioContext run; this gives it a desktop browser's autoplay policy again:
#: audio stays suspended until the user has clicked on the page.
AUTOPLAY_POLICY = """
(() => {
  let hasClicked = false;
  window.addEventListener("pointerdown", () => { hasClicked = true; }, true);
  const Native = window.AudioContext;
  window.AudioContext = class extends Native {
    constructor(...args) { super(...args); if (!hasClicked) super.suspend(); }
    resume() { return hasClicked ? super.resume() : Promise.resolve(); }
  };
})();
"""


async def test_when_the_browser_blocks_sound_the_page_asks_and_the_mouth_still_moves(
        make_bridge: MakeBridge, browser: Any) -> None:
    bridge = await make_bridge()
    samples, mouth = tone_bursts([(1.2, 0.7)])
    page, errors = await open_page(browser, bridge.server.url, init_script=AUTOPLAY_POLICY)
    bridge.publish(Audio(turn_id=1, sentence_index=0, sample_rate=24000, samples=samples, mouth=mouth))
    await page.wait_for_selector("#sound-gate:not([hidden])", timeout=10000)
    await page.wait_for_function("() => saijin.isPlaying && saijin.mouth > 0.3", timeout=5000)
    await page.wait_for_function("() => !saijin.isPlaying", timeout=5000)
    assert bridge.of_type(PlaybackStarted) == []  # nothing was heard, so nothing is reported
    await page.click("#sound-unlock")
    await page.wait_for_selector("#sound-gate", state="hidden", timeout=5000)
    bridge.publish(Audio(turn_id=1, sentence_index=1, sample_rate=24000, samples=samples, mouth=mouth))
    started = await bridge.wait_input(PlaybackStarted)
    assert started.sentence_index == 1
    assert errors.errors == []
