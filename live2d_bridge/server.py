"""The bridge server: serves the page on HTTP and speaks the page protocol on a WebSocket at /ws, one port.

It watches the bus (``publish`` is a bus observer) and broadcasts every non-internal event to every page
through a bounded queue per page — a slow or dead page loses messages, it never slows the pipeline. What pages
send becomes pipeline events through ``on_input``. Loopback only unless a token is configured; the Origin of
every WebSocket is checked; messages are size- and rate-limited; a bad message gets an ``error`` reply and
the connection goes on.
"""

from __future__ import annotations

import asyncio
import email.utils
import hmac
import ipaddress
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from assistant.config.schema import BridgeConfig, PersonaConfig
from assistant.errors import SaijinError
from assistant.events import (
    MODES,
    Audio,
    Event,
    InputEnded,
    Mode,
    PlaybackFinished,
    PlaybackStarted,
    SetPersona,
    Speaker,
    State,
)
from live2d_bridge import protocol
from live2d_bridge.assets import WEB_DIR, Live2DPaths, SiteFiles, content_type

log = logging.getLogger(__name__)

WS_PATH = "/ws"
#: Frames larger than this many times max_message_bytes close the connection (1009); smaller ones get an error.
HARD_SIZE_FACTOR = 4
MAX_PAGES = 32
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class _RateLimit:
    """A token bucket: ``rate`` messages a second, bursts of up to one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self.tokens = self.capacity
        self.last = time.monotonic()

    def allow(self) -> bool:
        current = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (current - self.last) * self.rate)
        self.last = current
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(eq=False)
class _Page:
    """One connected page: its outgoing queue (bounded) and what it has sent."""

    connection: ServerConnection
    queue: asyncio.Queue[str]
    limit: _RateLimit
    dropped: int = 0
    is_mic_open: bool = False
    sender: asyncio.Task[None] | None = field(default=None, repr=False)

    def offer(self, text: str) -> bool:
        try:
            self.queue.put_nowait(text)
            return True
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped in (1, 100) or self.dropped % 1000 == 0:
                log.warning("page %s is not keeping up: %d messages dropped", self.connection.remote_address,
                            self.dropped)
            return False


class BridgeServer:
    """Serves the page and the WebSocket; ``publish`` broadcasts events, ``on_input`` receives page input."""

    def __init__(self, bridge_cfg: BridgeConfig, personas: Sequence[PersonaConfig],
                 on_input: Callable[[Event], None], web_dir: Path | str = WEB_DIR,
                 live2d_paths: Live2DPaths | None = None, *, base_dir: Path | None = None,
                 persona: str | None = None, mode: str = "normal", send_audio: bool = True,
                 sleep_after_s: float | None = None) -> None:
        if not personas:
            raise SaijinError("the bridge needs at least one persona — check config/personas/")
        self.cfg = bridge_cfg
        self.personas = list(personas)
        self.on_input = on_input
        self.send_audio = send_audio
        #: Bedtime's sleep timer, for the page to show its progress.
        self.sleep_after_s = sleep_after_s
        if live2d_paths is None:
            live2d_paths = Live2DPaths.find(bridge_cfg.pixi_script, bridge_cfg.live2d_display_script, base_dir)
        self.files = SiteFiles(web_dir=Path(web_dir), live2d=live2d_paths, base_dir=base_dir, personas=self.personas)
        ids = [p.id for p in self.personas]
        first = persona if persona in ids else ids[0]
        self.persona = first
        self.display_name = self.personas[ids.index(first)].display_name
        self.mode = mode if mode in MODES else "normal"
        self.state = "listening"
        self._pages: set[_Page] = set()
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._port = bridge_cfg.port
        self._reported: OrderedDict[tuple[str, int, int], None] = OrderedDict()
        #: The page whose microphone feeds the pipeline (one at a time: two streams cannot share one VAD).
        self._mic_page: _Page | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def is_running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The page's address (with ?token= when one is configured)."""
        query = f"?token={self.cfg.token}" if self.cfg.token else ""
        return f"http://{self._display_host()}:{self._port}/{query}"

    @property
    def ws_url(self) -> str:
        query = f"?token={self.cfg.token}" if self.cfg.token else ""
        return f"ws://{self._display_host()}:{self._port}{WS_PATH}{query}"

    def _display_host(self) -> str:
        host = self.cfg.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        return _host_in_url(host)

    async def start(self) -> None:
        """Bind and serve. Refuses a non-loopback bind without a token (SaijinError, one line)."""
        if self._server is not None:
            return
        host = self.cfg.host
        if not is_loopback(host) and not self.cfg.token:
            raise SaijinError(
                f"bridge.host is {host!r}, which other machines can reach — set bridge.token (or pass --token) "
                "or bind 127.0.0.1")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        try:
            self._server = await serve(
                self._handle, host, self.cfg.port,
                process_request=self._process_request,
                max_size=self.cfg.max_message_bytes * HARD_SIZE_FACTOR,
                max_queue=32,
                ping_interval=20, ping_timeout=20, close_timeout=2,
                compression=None,
                server_header="saijin-bridge",
            )
        except OSError as exc:
            raise SaijinError(
                f"cannot serve the bridge on {host}:{self.cfg.port} ({exc.strerror or exc}) — "
                "choose another port with --port or bridge.port") from None
        sockets = list(self._server.sockets)
        if sockets:
            self._port = sockets[0].getsockname()[1]
        log.info("bridge serving %s (WebSocket %s)", self.url, self.ws_url)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._loop = None
        self._mic_page = None
        server.close()
        for page in tuple(self._pages):
            if page.sender is not None:
                page.sender.cancel()
        try:
            await asyncio.wait_for(server.wait_closed(), timeout=5)
        except TimeoutError:
            log.warning("bridge connections did not close in time")
        self._pages.clear()

    async def __aenter__(self) -> BridgeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ server -> pages

    @property
    def page_count(self) -> int:
        return len(self._pages)

    def publish(self, event: Event) -> None:
        """A bus observer: remember the state and broadcast the event to every page. Never blocks."""
        if self._loop is not None and self._loop_thread != threading.get_ident():
            self._loop.call_soon_threadsafe(self.publish, event)
            return
        self._remember(event)
        if event.internal or not self._pages:
            return
        include_audio = self.send_audio and isinstance(event, Audio)
        text = protocol.encode(protocol.event_message(event, include_audio=include_audio))
        for page in tuple(self._pages):
            page.offer(text)

    def _remember(self, event: Event) -> None:
        if isinstance(event, State):
            self.state = event.value
        elif isinstance(event, Speaker):
            self.persona = event.persona
            self.display_name = event.display_name
        elif isinstance(event, Mode):
            self.mode = "bedtime" if event.value == "bedtime" else "normal"

    def hello(self) -> dict[str, Any]:
        """The first message every page receives: versions, capabilities, personas and the current state."""
        return {
            "type": "hello",
            "protocol_version": protocol.PROTOCOL_VERSION,
            "capabilities": list(protocol.CAPABILITIES),
            "personas": [self._persona_info(p) for p in self.personas],
            "persona": self.persona,
            "display_name": self.display_name,
            "mode": self.mode,
            "state": self.state,
            "live2d_libs": self.files.live2d.urls(),
            "limits": {
                "max_message_bytes": self.cfg.max_message_bytes,
                "max_messages_per_second": self.cfg.max_messages_per_second,
                "mic_sample_rate": protocol.MIC_SAMPLE_RATE,
            },
            "sleep_after_s": self.sleep_after_s,
        }

    def _persona_info(self, persona: PersonaConfig) -> dict[str, Any]:
        return {
            "id": persona.id,
            "display_name": persona.display_name,
            "description": " ".join(persona.description.split()),
            "language": persona.language,
            "color": persona.avatar.color,
            "live2d": self.files.persona_live2d(persona.id),
            "expressions": dict(persona.avatar.expressions),
        }

    # ------------------------------------------------------------------ HTTP and the handshake

    def _allowed_origins(self, request: Request) -> set[str]:
        port = self._port
        hosts = {*_LOOPBACK_NAMES, self.cfg.host}
        allowed = {f"http://{_host_in_url(h)}:{port}" for h in hosts if h not in ("", "0.0.0.0", "::")}
        allowed.update(o.rstrip("/") for o in self.cfg.allowed_origins)
        if self.cfg.token:
            # With a token, a page served by this very server under any name it was reached by is fine.
            host_header = request.headers.get("Host")
            if host_header:
                allowed.add(f"http://{host_header}")
        return allowed

    def _host_allowed(self, request: Request) -> bool:
        """Without a token, only loopback names may reach us (a defence against DNS rebinding)."""
        if self.cfg.token:
            return True
        host_header = request.headers.get("Host", "")
        name = urlsplit(f"http://{host_header}").hostname or ""
        return is_loopback(name) or name == self.cfg.host

    def _token_ok(self, request: Request) -> bool:
        if not self.cfg.token:
            return True
        values = parse_qs(urlsplit(request.path).query).get("token", [])
        return any(hmac.compare_digest(v.encode(), self.cfg.token.encode()) for v in values)

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if not self._host_allowed(request):
            return _text_response(HTTPStatus.MISDIRECTED_REQUEST, "unknown host name\n")
        if path != WS_PATH:
            return await self._file_response(path)
        origin = request.headers.get("Origin")
        if origin is not None and origin.rstrip("/") not in self._allowed_origins(request):
            log.warning("refused a WebSocket from origin %s", origin)
            return _text_response(HTTPStatus.FORBIDDEN, "origin not allowed\n")
        if not self._token_ok(request):
            log.warning("refused a WebSocket with a missing or wrong token from %s", connection.remote_address)
            return _text_response(HTTPStatus.UNAUTHORIZED, "missing or wrong token\n")
        if len(self._pages) >= MAX_PAGES:
            return _text_response(HTTPStatus.SERVICE_UNAVAILABLE, "too many pages connected\n")
        return None

    async def _file_response(self, path: str) -> Response:
        local = self.files.lookup(path)
        if local is None:
            return _text_response(HTTPStatus.NOT_FOUND, "not found\n")
        try:
            body = await asyncio.to_thread(local.read_bytes)
        except OSError as exc:
            log.warning("cannot read %s: %s", local, exc)
            return _text_response(HTTPStatus.NOT_FOUND, "not found\n")
        headers = Headers([
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", content_type(local)),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
        ])
        return Response(200, "OK", headers, body)

    # ------------------------------------------------------------------ page <-> server

    async def _handle(self, connection: ServerConnection) -> None:
        page = _Page(connection=connection, queue=asyncio.Queue(maxsize=self.cfg.client_queue_size),
                     limit=_RateLimit(self.cfg.max_messages_per_second))
        page.offer(protocol.encode(self.hello()))
        self._pages.add(page)
        page.sender = asyncio.create_task(self._send_loop(page), name="bridge-sender")
        log.info("page connected from %s (%d open)", connection.remote_address, len(self._pages))
        try:
            async for raw in connection:
                self._receive(page, raw)
        except ConnectionClosed:
            pass
        finally:
            self._pages.discard(page)
            if page.sender is not None:
                page.sender.cancel()
            if page.is_mic_open:
                self._mic_page = None
                self._deliver(InputEnded(is_final=False))
            log.info("page from %s left (%d open)", connection.remote_address, len(self._pages))

    async def _send_loop(self, page: _Page) -> None:
        try:
            while True:
                text = await page.queue.get()
                await page.connection.send(text)
        except (ConnectionClosed, asyncio.CancelledError):
            pass

    def _receive(self, page: _Page, raw: str | bytes) -> None:
        if not page.limit.allow():
            page.offer(protocol.encode(protocol.error_message(
                f"too many messages (at most {self.cfg.max_messages_per_second:g} a second) — this one was dropped",
                "rate-limited")))
            return
        try:
            message = protocol.parse_page_message(raw, self.cfg.max_message_bytes)
        except protocol.ProtocolError as exc:
            page.offer(protocol.encode(protocol.error_message(exc.message, exc.code, exc.message_id)))
            return
        if message.type == "ping":
            page.offer(protocol.encode(protocol.pong_message(message.id)))
            return
        event = protocol.page_event(message)
        if event is None:
            return
        if isinstance(event, SetPersona) and event.persona not in {p.id for p in self.personas}:
            known = ", ".join(p.id for p in self.personas)
            page.offer(protocol.encode(protocol.error_message(
                f"set-persona: no persona named {event.persona!r} (known: {known})", "unknown-persona", message.id)))
            return
        if message.type in ("mic-audio", "mic-end") and self._mic_page not in (None, page):
            page.offer(protocol.encode(protocol.error_message(
                "another page is using the microphone — stop it there first", "mic-busy", message.id)))
            return
        if message.type == "mic-audio":
            page.is_mic_open = True
            self._mic_page = page
        elif message.type == "mic-end":
            page.is_mic_open = False
            self._mic_page = None
        if isinstance(event, PlaybackStarted | PlaybackFinished) and not self._first_report(event):
            return  # another page reported this sentence already
        self._deliver(event, page, message.id)

    def _first_report(self, event: PlaybackStarted | PlaybackFinished) -> bool:
        key = (event.type, event.turn_id, event.sentence_index)
        if key in self._reported:
            return False
        self._reported[key] = None
        while len(self._reported) > 512:
            self._reported.popitem(last=False)
        return True

    def _deliver(self, event: Event, page: _Page | None = None, message_id: str | int | None = None) -> None:
        try:
            self.on_input(event)
        except Exception as exc:
            log.exception("bridge input handler failed on %s", event.type)
            if page is not None:
                page.offer(protocol.encode(protocol.error_message(
                    f"{event.type}: could not be handled ({type(exc).__name__})", "internal", message_id)))


def _text_response(status: HTTPStatus, text: str) -> Response:
    body = text.encode()
    headers = Headers([
        ("Date", email.utils.formatdate(usegmt=True)),
        ("Connection", "close"),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ])
    return Response(status.value, status.phrase, headers, body)
