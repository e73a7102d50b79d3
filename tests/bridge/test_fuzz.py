"""Thousands of random and malformed page messages: the server answers each one (error or pong), passes on
exactly the valid ones, and stays up for the next page."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from typing import Any

from websockets.asyncio.client import connect

from assistant.events import Event
from live2d_bridge import protocol
from live2d_bridge.protocol import ProtocolError, parse_page_message
from tests.fixtures.bridge import MakeBridge

#: Messages over LIMIT get an error; frames over 4 x LIMIT close the connection (tested in test_server).
LIMIT = 8192
MESSAGES_PER_PAGE = 2500
PAGES = 3

VALID: list[dict[str, Any]] = [
    {"type": "text-input", "text": "こんにちは"},
    {"type": "mic-audio", "pcm": base64.b64encode(bytes(320)).decode()},
    {"type": "mic-end"},
    {"type": "interrupt"},
    {"type": "set-persona", "persona": "miyu"},
    {"type": "set-mode", "value": "bedtime"},
    {"type": "playback-started", "turn_id": 1, "sentence_index": 0},
    {"type": "playback-finished", "turn_id": 1, "sentence_index": 0, "played_s": 0.5},
    {"type": "ping"},
]
ODD_VALUES: list[Any] = [None, True, False, 0, -1, 1.5, 2**64, "", " ", "x" * 70, "bedtime", "yuuri", "nobody",
                         [], {}, [None], {"type": "ping"}, "AAAA", "####", "é" * 5, 1e308]


def mutate(rng: random.Random) -> str | bytes:
    """One random message: mostly broken, sometimes valid."""
    kind = rng.random()
    if kind < 0.08:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
    if kind < 0.16:
        alphabet = '{}[]":,0123456789abcdefnulltrue \\あ\n\t'
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
    if kind < 0.20:
        depth = rng.choice([10, 1000, 3000])
        return "[" * depth + "]" * depth if rng.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth
    if kind < 0.24:
        return json.dumps({"type": "text-input", "text": "あ" * rng.randint(2800, 9000)}, ensure_ascii=False)
    if kind < 0.28:
        return json.dumps(rng.choice(ODD_VALUES))
    message = dict(rng.choice(VALID))
    if rng.random() < 0.3:
        message["id"] = rng.choice([rng.randint(0, 10**6), f"m{rng.randint(0, 999)}", None, [1], "i" * 80])
    for _ in range(rng.choice([0, 0, 1, 2, 3])):
        action = rng.random()
        keys = list(message)
        if action < 0.35 and keys:
            message.pop(rng.choice(keys))
        elif action < 0.75:
            message[rng.choice([*keys, "text", "pcm", "value", "turn_id", "extra"]) if keys else "type"] = rng.choice(ODD_VALUES)
        else:
            message["type"] = rng.choice([*protocol.PAGE_MESSAGE_TYPES, "hello", "pong", "", "PING", "audio"])
    if rng.random() < 0.03:
        return json.dumps(message).replace("}", ', "n": NaN}', 1)
    return json.dumps(message, ensure_ascii=rng.random() < 0.5)


def expected_reply(raw: str | bytes, personas: set[str]) -> tuple[str | None, protocol.PageMessage | None]:
    """(the reply the server must send: an error code, 'pong' or None; the message if it must reach the pipeline)."""
    try:
        message = parse_page_message(raw, LIMIT)
    except ProtocolError as exc:
        return exc.code, None
    if message.type == "ping":
        return "pong", None
    if message.type == "set-persona" and message.fields["persona"] not in personas:
        return "unknown-persona", None
    return None, message


async def fuzz_one_page(url: str, seed: int, personas: set[str]) -> tuple[int, list[protocol.PageMessage]]:
    """Send the messages, read every reply; returns (replies checked, the messages that must become events)."""
    rng = random.Random(seed)
    messages = [mutate(rng) for _ in range(MESSAGES_PER_PAGE)] + ['{"type": "ping", "id": "last"}']
    if seed:
        # Only the first page streams a microphone (a second one would get mic-busy, depending on timing).
        messages = ['{"type": "ping"}' if _is_mic(m) else m for m in messages]
    expectations = [expected_reply(m, personas) for m in messages]
    expected_replies = [e[0] for e in expectations if e[0] is not None]
    async with connect(url, max_size=None) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"

        async def read() -> list[dict[str, Any]]:
            replies: list[dict[str, Any]] = []
            while len(replies) < len(expected_replies):
                message = json.loads(await ws.recv())
                if message["type"] in ("error", "pong"):
                    replies.append(message)
            return replies

        reader = asyncio.create_task(read())
        for raw in messages:
            await ws.send(raw)
        replies = await reader
    got = [r.get("code", r["type"]) for r in replies]
    assert got == expected_replies
    assert replies[-1] == {"type": "pong", "time": replies[-1]["time"], "id": "last"}
    for reply in replies:
        if reply["type"] == "error":
            assert reply["message"] and "\n" not in reply["message"] and len(reply["message"]) < 400
    return len(replies), [e[1] for e in expectations if e[1] is not None]


def _is_mic(raw: str | bytes) -> bool:
    try:
        return parse_page_message(raw, LIMIT).type in ("mic-audio", "mic-end")
    except ProtocolError:
        return False


def events_expected(pages: list[list[protocol.PageMessage]]) -> int:
    """Every accepted message becomes an event, except repeated playback reports of one sentence; a page that
    leaves with its microphone open adds an input-ended."""
    count = 0
    reports: set[tuple[str, int, int]] = set()
    for accepted in pages:
        is_mic_open = False
        for message in accepted:
            if message.type.startswith("playback-"):
                reports.add((message.type, message.fields["turn_id"], message.fields["sentence_index"]))
                continue
            count += 1
            if message.type in ("mic-audio", "mic-end"):
                is_mic_open = message.type == "mic-audio"
        count += is_mic_open
    return count + len(reports)


async def test_thousands_of_random_messages_are_each_answered_and_the_server_stays_up(make_bridge: MakeBridge) -> None:
    bridge = await make_bridge(max_message_bytes=LIMIT, max_messages_per_second=1e6, client_queue_size=100000)
    personas = {p.id for p in bridge.server.personas}
    results = await asyncio.wait_for(
        asyncio.gather(*(fuzz_one_page(bridge.server.ws_url, seed, personas) for seed in range(PAGES))), timeout=240)
    replies = sum(r[0] for r in results)
    assert replies > PAGES * MESSAGES_PER_PAGE * 0.6
    await asyncio.sleep(0.2)  # the last page's input-ended
    assert len(bridge.inputs) == events_expected([r[1] for r in results])
    assert all(isinstance(e, Event) and e.internal for e in bridge.inputs)
    # Still up: a new page is greeted and answered.
    async with connect(bridge.server.ws_url) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        await ws.send('{"type": "ping", "id": 1}')
        assert json.loads(await ws.recv())["id"] == 1
