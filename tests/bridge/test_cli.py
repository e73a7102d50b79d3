"""`saijin bridge` as a user runs it: prints both URLs, serves the page and the WebSocket, stops on Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from websockets.asyncio.client import connect

from tests.fixtures.bridge import ROOT


def start_bridge(config_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "assistant", "bridge", "--config", str(config_dir), *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


async def test_saijin_bridge_serves_the_page_and_answers_on_the_websocket(config_dir: Path) -> None:
    process = start_bridge(config_dir, "--port", "0")
    try:
        assert process.stdout is not None
        page_line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)
        ws_line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 5)
        assert page_line.startswith("page:") and ws_line.startswith("websocket:"), (page_line, ws_line)
        page_url, ws_url = page_line.split()[1], ws_line.split()[1]
        assert page_url.startswith("http://127.0.0.1:") and page_url.endswith("/")
        assert ws_url == page_url.replace("http://", "ws://") + "ws"
        html = await asyncio.to_thread(lambda: urllib.request.urlopen(page_url, timeout=10).read().decode())
        assert "<title>Saijin</title>" in html
        async with connect(ws_url) as ws:
            hello = json.loads(await ws.recv())
            assert hello["type"] == "hello" and hello["protocol_version"] == 1
            await ws.send("{oops")
            assert json.loads(await ws.recv())["code"] == "bad-json"
            # Alone, the bridge echoes persona and mode choices so the page stays usable.
            await ws.send('{"type": "set-mode", "value": "bedtime"}')
            assert json.loads(await ws.recv()) == {"type": "mode", "value": "bedtime"}
            await ws.send('{"type": "set-persona", "persona": "miyu"}')
            assert json.loads(await ws.recv()) == {"type": "speaker", "persona": "miyu", "display_name": "美遊"}
            await ws.send('{"type": "ping", "id": 2}')
            assert json.loads(await ws.recv())["type"] == "pong"
        process.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(process.wait, 10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_non_loopback_host_without_a_token_stops_with_one_line(config_dir: Path) -> None:
    process = start_bridge(config_dir, "--host", "0.0.0.0", "--port", "0")
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("saijin: ") and "token" in lines[0], err
    assert "Traceback" not in err and out == ""
