"""The bridge server with real WebSocket and HTTP clients: hello, replies, broadcasting, page input, security."""

from __future__ import annotations

import asyncio
import base64
import json
import socket

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from assistant.config.schema import BridgeConfig
from assistant.errors import SaijinError
from assistant.events import (
    Audio,
    AudioFrame,
    InputEnded,
    InterruptRequest,
    Mode,
    PlaybackFinished,
    PlaybackStarted,
    SetMode,
    SetPersona,
    Speaker,
    State,
    Subtitle,
    TextInput,
    UserSpeechEnded,
    VoiceStarted,
    decode_wav_base64,
)
from assistant.pipeline.bus import Bus
from assistant.pipeline.runtime import Pipeline
from live2d_bridge import protocol
from live2d_bridge.server import BridgeServer
from live2d_bridge.stage import BridgeStage
from tests.fixtures.bridge import MakeBridge


async def recv(ws: object, timeout: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))  # type: ignore[attr-defined]


async def http_get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """A raw HTTP GET (no client-side path cleaning), returning status, headers and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def test_hello_names_version_personas_and_state(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    async with connect(bridge.server.ws_url) as ws:
        hello = await recv(ws)
    assert hello["type"] == "hello" and hello["protocol_version"] == protocol.PROTOCOL_VERSION
    assert [p["id"] for p in hello["personas"]] == ["yuuri", "miyu"]
    yuuri = hello["personas"][0]
    assert yuuri["display_name"] == "悠璃" and yuuri["color"] == "#7aa2f7" and yuuri["description"]
    assert yuuri["live2d"] == {"core_script": None, "model": None, "scale": 1.0}
    assert yuuri["expressions"]["happy"] == "joy"
    assert (hello["persona"], hello["mode"], hello["state"]) == ("yuuri", "normal", "listening")
    assert "text-input" in hello["capabilities"] and hello["limits"]["mic_sample_rate"] == 16000


async def test_a_late_page_gets_the_current_state_in_hello(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    bridge.publish(Speaker(persona="miyu", display_name="美遊"), Mode(value="bedtime"), State(value="sleeping"))
    async with connect(bridge.server.ws_url) as ws:
        hello = await recv(ws)
    assert (hello["persona"], hello["display_name"], hello["mode"], hello["state"]) == ("miyu", "美遊", "bedtime", "sleeping")


async def test_the_page_and_its_files_are_served(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    port = bridge.server.port
    status, headers, body = await http_get(port, "/")
    assert status == 200 and headers["content-type"].startswith("text/html") and b"app.js" in body
    for name, kind in (("/app.js", "text/javascript"), ("/style.css", "text/css"), ("/avatar.js", "text/javascript"),
                       ("/mic-worklet.js", "text/javascript")):
        status, headers, _ = await http_get(port, name)
        assert status == 200 and headers["content-type"].startswith(kind), name
        assert headers["x-content-type-options"] == "nosniff"
    for bad in ("/../pyproject.toml", "/%2e%2e/pyproject.toml", "/..%2fpyproject.toml", "/nope.js",
                "/live2d/yuuri/core.js", "/live2d/nobody/model/x.json", "/vendor/pixi.min.js", "/.hidden"):
        status, _, _ = await http_get(port, bad)
        assert status == 404, bad


async def test_ping_and_malformed_messages_are_answered_and_the_connection_stays(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    async with connect(bridge.server.ws_url) as ws:
        await recv(ws)
        await ws.send('{"type": "ping", "id": "p1"}')
        pong = await recv(ws)
        assert pong["type"] == "pong" and pong["id"] == "p1"
        for raw, code in (("{", "bad-json"), ('{"type": "dance"}', "unknown-type"),
                          ('{"type": "set-persona", "persona": "nobody", "id": 5}', "unknown-persona"),
                          (b"\x00\xff", "binary")):
            await ws.send(raw)
            reply = await recv(ws)
            assert reply["type"] == "error" and reply["code"] == code, raw
        assert reply["message"]
        await ws.send('{"type": "ping"}')
        assert (await recv(ws))["type"] == "pong"
    assert bridge.inputs == []


async def test_page_messages_become_events(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    pcm = (np.sin(np.arange(640) / 16000 * 2 * np.pi * 300) * 12000).astype("<i2")
    async with connect(bridge.server.ws_url) as ws:
        await recv(ws)
        for message in ({"type": "text-input", "text": "こんにちは"},
                        {"type": "mic-audio", "pcm": base64.b64encode(pcm.tobytes()).decode()},
                        {"type": "mic-end"}, {"type": "interrupt"}, {"type": "set-persona", "persona": "miyu"},
                        {"type": "set-mode", "value": "bedtime"},
                        {"type": "playback-started", "turn_id": 2, "sentence_index": 0, "level": 0.3},
                        {"type": "playback-finished", "turn_id": 2, "sentence_index": 0, "played_s": 1.5}):
            await ws.send(json.dumps(message))
        await bridge.wait_input(PlaybackFinished)
    kinds = [type(e) for e in bridge.inputs]
    assert kinds == [TextInput, AudioFrame, InputEnded, InterruptRequest, SetPersona, SetMode, PlaybackStarted,
                     PlaybackFinished]
    frame = bridge.inputs[1]
    assert frame.sample_rate == 16000 and np.allclose(frame.samples * 32768, pcm)
    assert bridge.inputs[4] == SetPersona(persona="miyu") and bridge.inputs[5] == SetMode(value="bedtime")


async def test_a_page_that_leaves_with_its_microphone_open_ends_the_input(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    async with connect(bridge.server.ws_url) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "mic-audio", "pcm": base64.b64encode(bytes(640)).decode()}))
        await bridge.wait_input(AudioFrame)
    await bridge.wait_input(InputEnded)


async def test_one_page_at_a_time_streams_its_microphone(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    chunk = json.dumps({"type": "mic-audio", "pcm": base64.b64encode(bytes(640)).decode()})
    async with connect(bridge.server.ws_url) as a, connect(bridge.server.ws_url) as b:
        await recv(a)
        await recv(b)
        await a.send(chunk)
        await b.send(chunk)
        assert (await recv(b))["code"] == "mic-busy"
        await a.send('{"type": "mic-end"}')
        await b.send(chunk)
        await b.send('{"type": "ping"}')
        assert (await recv(b))["type"] == "pong"
    assert [type(e) for e in bridge.inputs] == [AudioFrame, InputEnded, AudioFrame, InputEnded]


async def test_events_are_broadcast_to_every_page_and_internal_ones_are_not(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    speech = np.sin(np.arange(4800) / 24000 * 2 * np.pi * 200).astype(np.float32) * 0.5
    async with connect(bridge.server.ws_url) as a, connect(bridge.server.ws_url) as b:
        await recv(a)
        await recv(b)
        bridge.publish(VoiceStarted(onset=1.0), State(value="thinking"),
                       UserSpeechEnded(turn_id=1, onset=1.0, speech_end=2.0, decided_at=2.3, audio=speech),
                       Subtitle(turn_id=1, persona="yuuri", sentence_index=0, text="はい。"),
                       Audio(turn_id=1, sentence_index=0, sample_rate=24000, samples=speech, mouth=(0.1, 0.9)))
        for ws in (a, b):
            got = [await recv(ws) for _ in range(4)]
            assert [m["type"] for m in got] == ["state", "user-speech-ended", "subtitle", "audio"]
            assert "wav" not in got[1]  # the user's own audio never goes to pages
            samples, rate = decode_wav_base64(got[3]["wav"])
            assert rate == 24000 and len(samples) == len(speech) and got[3]["mouth"] == [0.1, 0.9]


async def test_without_send_audio_the_audio_event_carries_no_wav(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    bridge.server.send_audio = False
    async with connect(bridge.server.ws_url) as ws:
        await recv(ws)
        bridge.publish(Audio(turn_id=1, sentence_index=0, sample_rate=16000, samples=np.ones(160, np.float32),
                             mouth=(0.5,)))
        message = await recv(ws)
    assert message["type"] == "audio" and "wav" not in message and message["mouth"] == [0.5]


async def test_a_page_that_does_not_read_loses_messages_and_slows_nothing(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge(client_queue_size=64)
    tiny = socket.socket()
    tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    tiny.connect(("127.0.0.1", bridge.server.port))
    slow = await connect(bridge.server.ws_url, sock=tiny, max_queue=1, close_timeout=0.5)  # never reads
    fast = await connect(bridge.server.ws_url)
    count = 600

    async def read_fast() -> list[int]:
        indexes: list[int] = []
        while len(indexes) < count:
            message = await recv(fast, timeout=20)
            if message["type"] == "subtitle":
                indexes.append(message["sentence_index"])
        return indexes

    try:
        await recv(fast)
        reader = asyncio.create_task(read_fast())
        for i in range(count):
            assert bridge.server.publish(Subtitle(turn_id=1, persona="yuuri", sentence_index=i, text="あ" * 2000)) is None
            if i % 10 == 9:
                await asyncio.sleep(0.005)
        assert await reader == list(range(count))  # the page that keeps up gets everything, in order
        by_port = {p.connection.remote_address[1]: p for p in bridge.server._pages}
        slow_page, fast_page = by_port[slow.local_address[1]], by_port[fast.local_address[1]]
        assert slow_page.dropped > 0 and slow_page.queue.qsize() <= 64
        assert fast_page.dropped == 0
    finally:
        await slow.close()
        await fast.close()


async def test_playback_reports_of_one_sentence_count_once(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    report = json.dumps({"type": "playback-started", "turn_id": 7, "sentence_index": 0})
    async with connect(bridge.server.ws_url) as a, connect(bridge.server.ws_url) as b:
        await recv(a)
        await recv(b)
        await a.send(report)
        await b.send(report)
        await a.send('{"type": "ping"}')
        await b.send('{"type": "ping"}')
        await recv(a)
        await recv(b)
    assert len(bridge.of_type(PlaybackStarted)) == 1


# ------------------------------------------------------------------------------------------------ security


async def test_a_non_loopback_bind_without_a_token_is_refused(bridge_personas: list) -> None:
    server = BridgeServer(BridgeConfig(host="0.0.0.0", port=0), bridge_personas, lambda e: None)
    with pytest.raises(SaijinError) as info:
        await server.start()
    assert "token" in str(info.value) and "\n" not in str(info.value)
    assert not server.is_running


async def test_a_token_is_required_when_configured(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge(token="s3cret-token")
    server = bridge.server
    assert server.url.endswith("/?token=s3cret-token") and server.ws_url.endswith("/ws?token=s3cret-token")
    bare = server.ws_url.split("?")[0]
    for url in (bare, bare + "?token=wrong"):
        with pytest.raises(InvalidStatus) as info:
            async with connect(url):
                pass
        assert info.value.response.status_code == 401
    async with connect(server.ws_url) as ws:
        assert (await recv(ws))["type"] == "hello"


async def test_a_foreign_origin_is_refused(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge(allowed_origins=["http://obs.local:9000"])
    port = bridge.server.port
    with pytest.raises(InvalidStatus) as info:
        async with connect(bridge.server.ws_url, origin="http://evil.example"):
            pass
    assert info.value.response.status_code == 403
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}", "http://obs.local:9000"):
        async with connect(bridge.server.ws_url, origin=origin) as ws:
            assert (await recv(ws))["type"] == "hello"


async def test_a_foreign_host_name_is_refused_without_a_token(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge()
    status, _, _ = await http_get(bridge.server.port, "/", host="attacker.example")
    assert status == 421
    status, _, _ = await http_get(bridge.server.port, "/", host="localhost")
    assert status == 200


async def test_oversized_messages_get_an_error_and_huge_frames_close(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge(max_message_bytes=4096)
    async with connect(bridge.server.ws_url, max_size=None) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "text-input", "text": "x" * 5000}))
        reply = await recv(ws)
        assert reply["code"] == "too-large" and "4096" in reply["message"]
        await ws.send('{"type": "ping"}')
        assert (await recv(ws))["type"] == "pong"
        await ws.send("x" * (4096 * 4 + 1))
        with pytest.raises(ConnectionClosed) as info:
            await recv(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    assert bridge.inputs == []


async def test_too_many_messages_are_dropped_with_an_error(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge(max_messages_per_second=20)
    async with connect(bridge.server.ws_url) as ws:
        await recv(ws)
        for i in range(60):
            await ws.send(json.dumps({"type": "ping", "id": i}))
        replies = [await recv(ws) for _ in range(60)]
        limited = [r for r in replies if r["type"] == "error"]
        assert all(r["code"] == "rate-limited" for r in limited)
        assert 30 <= len(limited) <= 45  # a burst of about 20 passes, the rest is dropped
        await asyncio.sleep(1.0)
        await ws.send('{"type": "ping", "id": "later"}')
        assert (await recv(ws))["id"] == "later"


async def test_a_taken_port_is_one_clear_error(make_bridge: MakeBridge, bridge_personas: list) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = BridgeServer(BridgeConfig(port=port), bridge_personas, lambda e: None)
        with pytest.raises(SaijinError) as info:
            await server.start()
    assert f"127.0.0.1:{port}" in str(info.value) and "--port" in str(info.value)


# ------------------------------------------------------------------------------------------------ as a stage


async def test_the_stage_serves_the_pipeline_and_emits_page_input(bridge_sent: object, bridge_personas: list) -> None:
    server = BridgeServer(BridgeConfig(port=0), bridge_personas, lambda e: None)
    stage = BridgeStage(server)
    bus = Bus()
    seen: list = []
    bus.subscribe(seen.append)
    bus.subscribe(server.publish)
    async with Pipeline([stage], bus) as pipeline:
        assert server.is_running
        async with connect(server.ws_url) as ws:
            await recv(ws)
            await ws.send('{"type": "text-input", "text": "やあ"}')
            pipeline.emit(State(value="thinking"))
            assert (await recv(ws)) == {"type": "state", "value": "thinking"}
            for _ in range(100):
                if any(isinstance(e, TextInput) for e in seen):
                    break
                await asyncio.sleep(0.02)
    assert TextInput(text="やあ") in seen
    assert not server.is_running
