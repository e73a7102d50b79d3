"""The engine manager: resident engines start with the assistant, on-demand engines start when a persona needs
them and stop when idle, and running vLLM engines stay within the VRAM budget (least recently used goes first).
Ollama engines are loaded and unloaded through keep_alive instead."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx

from assistant.config.loader import Settings
from assistant.config.schema import EngineConfig
from assistant.errors import EngineUnavailable
from assistant.ops.engines import engines_in_use, probe_engine_async, server_root
from assistant.ops.vllm import VllmProcess

log = logging.getLogger(__name__)

#: Comma-separated engine names run by someone else (systemd units): the manager waits for them, never launches.
EXTERNAL_ENGINES_ENV = "SAIJIN_EXTERNAL_ENGINES"


@dataclass
class _Slot:
    name: str
    engine: EngineConfig
    process: VllmProcess | None = None
    #: Serving, but started outside this manager (systemd, by hand): counted in the budget, never stopped.
    adopted: bool = False
    #: Ollama: the model is loaded (kept alive).
    loaded: bool = False
    last_used: float = field(default_factory=time.monotonic)
    starting: asyncio.Task[None] | None = None

    @property
    def utilization(self) -> float:
        return self.engine.launch.gpu_memory_utilization if self.engine.launch else 0.0

    @property
    def is_running(self) -> bool:
        """Counted in the VRAM budget: our process alive (starting or serving), or an adopted server."""
        return self.adopted or (self.process is not None and self.process.is_running())


class EngineManager:
    """Starts, keeps and stops the engines of routing.yaml for a running assistant.

    ``await start()`` brings up resident engines; ``await ensure_ready(name, on_starting)`` before each request
    (``on_starting`` is called once when the engine has to be started or loaded first, so the persona can say
    「ちょっと待ってね」); ``touch(name)`` while using it; ``await stop()`` on shutdown.
    """

    def __init__(self, settings: Settings, external_engines: Iterable[str] | None = None,
                 idle_check_s: float | None = None) -> None:
        self.settings = settings
        self.budget = settings.routing.manager.vram_budget
        if external_engines is None:
            external_engines = [n.strip() for n in os.environ.get(EXTERNAL_ENGINES_ENV, "").split(",") if n.strip()]
        self.external = set(external_engines)
        self.slots = {name: _Slot(name, engine) for name, engine in settings.routing.engines.items()}
        on_demand = [s.engine.idle_stop_s for s in self.slots.values() if not s.engine.resident]
        self._idle_check_s = idle_check_s or min(30.0, max(1.0, min(on_demand, default=60.0) / 4))
        self._lock = asyncio.Lock()
        self._idle_task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> dict[str, str]:
        """Start the resident engines in use (concurrently) and the idle watcher. Returns {engine: error} for
        those that failed; the assistant keeps running and retries them on use."""
        names = [n for n in engines_in_use(self.settings) if self.slots[n].engine.resident
                 and self.slots[n].engine.kind in ("vllm", "ollama")]
        results = await asyncio.gather(*(self.ensure_ready(n) for n in names), return_exceptions=True)
        failures = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                failures[name] = str(result)
                log.warning("%s did not start: %s", name, result)
        if self._idle_task is None:
            self._idle_task = asyncio.create_task(self._idle_loop(), name="engine-idle-watch")
        return failures

    async def stop(self) -> None:
        """Stop every engine this manager started and unload the Ollama models it loaded."""
        if self._idle_task is not None:
            self._idle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_task
            self._idle_task = None
        for slot in self.slots.values():
            if slot.starting is not None and not slot.starting.done():
                slot.starting.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await slot.starting
        await asyncio.gather(*(self._stop_slot(s) for s in self.slots.values()), return_exceptions=True)

    # -- use ---------------------------------------------------------------------------------------

    def touch(self, name: str) -> None:
        """Mark an engine as just used (it is evicted and idle-stopped last)."""
        slot = self.slots.get(name)
        if slot is not None:
            slot.last_used = time.monotonic()

    def running(self) -> list[str]:
        """Engines counted in the VRAM budget now."""
        return [s.name for s in self.slots.values() if s.is_running]

    def used_budget(self) -> float:
        return sum(s.utilization for s in self.slots.values() if s.engine.kind == "vllm" and s.is_running)

    async def ensure_ready(self, name: str, on_starting: Callable[[], None] | None = None) -> None:
        """Return when engine ``name`` can answer: start it (evicting idle on-demand engines to stay within the
        budget) or load it (Ollama) if needed, calling ``on_starting`` once before the wait."""
        slot = self.slots.get(name)
        if slot is None:
            raise EngineUnavailable(f"no engine named {name!r} in routing.yaml")
        self.touch(name)
        if slot.engine.kind in ("embedded", "openai"):
            return
        if slot.engine.kind == "ollama":
            await self._ensure_ollama(slot, on_starting)
            return
        if slot.starting is None and slot.is_running:
            return
        async with self._lock:
            task = slot.starting
            if task is None:
                if slot.is_running:
                    return
                task = await self._begin(slot)
                if task is None:
                    return
                slot.starting = task
        if on_starting is not None:
            on_starting()
        try:
            await asyncio.shield(task)
        except (EngineUnavailable, asyncio.CancelledError):
            if slot.starting is task and task.done():
                slot.starting = None
                slot.adopted = False
                if slot.process is not None:
                    await slot.process.stop(timeout=10)
                    slot.process = None
            current = asyncio.current_task()
            if task.cancelled() and not (current is not None and current.cancelling()):
                raise EngineUnavailable(f"{name} was stopped while starting (evicted or shut down)") from None
            raise
        if slot.starting is task:
            slot.starting = None
        self.touch(name)

    def report_failure(self, name: str) -> None:
        """The engine failed a request: look at it afresh next time (re-probe a server started elsewhere,
        restart our own if its process died)."""
        slot = self.slots.get(name)
        if slot is not None and slot.starting is None:
            slot.adopted = False
            slot.loaded = False

    async def _begin(self, slot: _Slot) -> asyncio.Task[None] | None:
        """Under the lock: adopt a server that already answers (None), or return the task that waits for one
        run elsewhere, or make room and launch our own."""
        probe = await probe_engine_async(slot.engine, timeout=2.0)
        if probe.state == "up":
            if not probe.lists(slot.engine.model):
                raise EngineUnavailable(f"{slot.name}: {slot.engine.base_url} serves {', '.join(probe.models) or 'nothing'}"
                                        f", not {slot.engine.model!r} — check routing.yaml")
            slot.adopted = True
            return None
        if slot.name in self.external or probe.state == "loading":
            # Someone else runs it and it is on its way up (or restarting): wait rather than start a second one.
            slot.adopted = True
            return asyncio.create_task(self._wait_external(slot), name=f"wait-{slot.name}")
        await self._make_room(slot)
        slot.process = VllmProcess(self.settings, slot.name)
        slot.process.start()
        return asyncio.create_task(slot.process.wait_ready(), name=f"start-{slot.name}")

    async def _wait_external(self, slot: _Slot) -> None:
        launch = slot.engine.launch
        deadline = time.monotonic() + (launch.startup_timeout_s if launch else 600)
        while time.monotonic() < deadline:
            probe = await probe_engine_async(slot.engine, timeout=2.0)
            if probe.state == "up" and probe.lists(slot.engine.model):
                return
            await asyncio.sleep(1.0)
        raise EngineUnavailable(f"{slot.name} at {slot.engine.base_url} did not become ready (it is run outside "
                                f"Saijin) — check its service: systemctl --user status saijin-llm-{slot.name}")

    async def _make_room(self, slot: _Slot) -> list[str]:
        """Stop least-recently-used on-demand engines until ``slot`` fits the budget (called under the lock)."""
        need = slot.utilization
        evicted: list[str] = []
        while self.used_budget() + need > self.budget + 1e-9:
            candidates = sorted((s for s in self.slots.values() if s is not slot and s.engine.kind == "vllm"
                                 and s.process is not None and s.process.is_running() and not s.engine.resident),
                                key=lambda s: s.last_used)
            if not candidates:
                used = ", ".join(f"{s.name} {s.utilization:g}" for s in self.slots.values()
                                 if s.engine.kind == "vllm" and s.is_running)
                raise EngineUnavailable(
                    f"cannot start {slot.name}: it needs gpu_memory_utilization {need:g} and running engines take "
                    f"{self.used_budget():g} ({used}) of the budget {self.budget:g} — lower gpu_memory_utilization "
                    f"or make an engine on-demand (resident: false)")
            victim = candidates[0]
            log.info("evicting %s (idle %.0f s) to make room for %s", victim.name,
                     time.monotonic() - victim.last_used, slot.name)
            await self._stop_slot(victim)
            evicted.append(victim.name)
        return evicted

    async def _stop_slot(self, slot: _Slot) -> None:
        if slot.engine.kind == "ollama" and slot.loaded and not slot.engine.resident:
            await self._ollama_keep_alive(slot, 0)
            slot.loaded = False
        if slot.starting is not None and not slot.starting.done():
            slot.starting.cancel()
        slot.starting = None
        if slot.process is not None:
            await slot.process.stop()
            slot.process = None

    # -- idle --------------------------------------------------------------------------------------

    async def stop_idle(self, now: float | None = None) -> list[str]:
        """Stop (or unload) on-demand engines idle longer than their idle_stop_s; returns their names."""
        now = time.monotonic() if now is None else now
        stopped = []
        async with self._lock:
            for slot in self.slots.values():
                if slot.engine.resident or now - slot.last_used < slot.engine.idle_stop_s:
                    continue
                if slot.starting is not None and not slot.starting.done():
                    continue
                if slot.process is not None or (slot.engine.kind == "ollama" and slot.loaded):
                    log.info("%s idle for %.0f s: stopping", slot.name, now - slot.last_used)
                    await self._stop_slot(slot)
                    stopped.append(slot.name)
        return stopped

    async def _idle_loop(self) -> None:
        while True:
            await asyncio.sleep(self._idle_check_s)
            try:
                await self.stop_idle()
            except Exception:
                log.warning("idle check failed", exc_info=True)

    # -- Ollama --------------------------------------------------------------------------------------

    async def _ensure_ollama(self, slot: _Slot, on_starting: Callable[[], None] | None) -> None:
        if slot.loaded:
            return
        if on_starting is not None:
            on_starting()
        keep = -1 if slot.engine.resident else slot.engine.keep_alive
        await self._ollama_keep_alive(slot, keep)
        slot.loaded = True

    async def _ollama_keep_alive(self, slot: _Slot, keep_alive: str | int) -> None:
        """POST /api/generate with only a model and keep_alive: loads it (or unloads it with 0)."""
        url = f"{server_root(slot.engine.base_url or '')}/api/generate"
        try:
            async with httpx.AsyncClient(timeout=slot.engine.timeout_s, trust_env=False) as client:
                response = await client.post(url, json={"model": slot.engine.model, "keep_alive": keep_alive})
        except httpx.HTTPError as exc:
            raise EngineUnavailable(f"{slot.name}: cannot reach Ollama at {url} ({type(exc).__name__}) — start it "
                                    f"with `ollama serve`") from None
        if response.status_code >= 400:
            raise EngineUnavailable(f"{slot.name}: Ollama refused {slot.engine.model!r} (HTTP {response.status_code}: "
                                    f"{response.text[:120]}) — `ollama pull {slot.engine.model}`")
