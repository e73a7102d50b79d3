"""The status view: engines (up, loading, down; model; port; uptime), GPU memory, RAM, recent latency."""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from assistant.config.loader import Settings
from assistant.config.schema import EngineConfig
from assistant.ops.engines import engines_in_use, probe_engine_async
from assistant.ops.gpu import GIB, GpuInfo, detect_gpus
from assistant.ops.ports import listener_pid
from assistant.ops.vllm import running_state, url_port

#: How many recent turns the latency figures cover.
LATENCY_WINDOW = 50


@dataclass
class EngineStatus:
    name: str
    kind: str
    state: str  #: up | loading | down | embedded
    model: str
    port: int | None
    in_use: bool
    pid: int | None = None
    uptime_s: float | None = None
    detail: str = ""


@dataclass
class LatencySummary:
    turns: int
    p50_ms: float
    p95_ms: float


@dataclass
class StatusReport:
    engines: list[EngineStatus]
    gpus: list[GpuInfo] = field(default_factory=list)
    ram_used_bytes: int = 0
    ram_total_bytes: int = 0
    latency: LatencySummary | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "engines": [asdict(e) for e in self.engines],
            "gpus": [asdict(g) for g in self.gpus],
            "ram": {"used_bytes": self.ram_used_bytes, "total_bytes": self.ram_total_bytes},
            "latency": asdict(self.latency) if self.latency else None,
        }


def latency_path(settings: Settings) -> Path:
    """Where the latency observer appends one `latency` event per line."""
    return settings.data_dir / "latency.jsonl"


def latency_summary(path: Path, window: int = LATENCY_WINDOW) -> LatencySummary | None:
    """p50/p95 voice-to-voice latency over the last ``window`` turns that have one, or None."""
    values: list[float] = []
    for line in reversed(_tail_lines(path, 256 * 1024)):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        value = data.get("voice_to_voice_ms") if isinstance(data, dict) and data.get("type") == "latency" else None
        if isinstance(value, int | float) and math.isfinite(value):
            values.append(float(value))
            if len(values) >= window:
                break
    if not values:
        return None
    return LatencySummary(len(values), percentile(values, 50), percentile(values, 95))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile with linear interpolation (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _tail_lines(path: Path, max_bytes: int) -> list[str]:
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    lines = data.splitlines()
    if size > max_bytes and lines:
        lines = lines[1:]  # the first line is probably cut
    return [line for line in lines if line.strip()]


async def engine_status(settings: Settings, name: str, engine: EngineConfig, in_use: bool) -> EngineStatus:
    if engine.kind == "embedded":
        return EngineStatus(name, engine.kind, "embedded", engine.model, None, in_use,
                            detail="runs inside the assistant")
    port = engine.launch.port if engine.kind == "vllm" and engine.launch else url_port(engine.base_url or "")
    state = running_state(settings, name) if engine.kind == "vllm" else None
    probe = await probe_engine_async(engine, timeout=1.5)
    status = EngineStatus(name, engine.kind, probe.state, engine.model, port, in_use)
    if state is not None:
        status.pid = state.pid
        status.uptime_s = time.time() - state.started_at
        if probe.state == "down":
            status.state = "loading"  # the process runs but does not answer yet
    elif probe.state != "down" and port:
        status.pid, status.uptime_s = _listener(port)
    if probe.state == "up" and not probe.lists(engine.model):
        status.detail = f"serves {', '.join(probe.models) or 'nothing'}, not {engine.model}"
    elif probe.state == "down":
        status.detail = probe.detail
    return status


def _listener(port: int) -> tuple[int | None, float | None]:
    """The pid and uptime of whoever listens on ``port`` (when the system lets us see it)."""
    pid = listener_pid(port)
    if pid is None:
        return None, None
    try:
        return pid, time.time() - psutil.Process(pid).create_time()
    except psutil.Error:
        return pid, None


async def collect_status(settings: Settings, engine: str | None = None,
                         gpu_memory_gb: float | None = None) -> StatusReport:
    """Everything the status view shows, gathered concurrently."""
    in_use = set(engines_in_use(settings))
    names = [engine] if engine else list(settings.routing.engines)
    engines = await asyncio.gather(*(engine_status(settings, n, settings.routing.engines[n], n in in_use)
                                     for n in names))
    gpus = await asyncio.to_thread(detect_gpus, gpu_memory_gb)
    memory = psutil.virtual_memory()
    return StatusReport(list(engines), gpus, int(memory.total - memory.available), int(memory.total),
                        latency_summary(latency_path(settings)))


def format_uptime(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def render(report: StatusReport) -> Any:
    """The report as rich renderables (an engines table, then machine and latency lines)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    colours = {"up": "green", "loading": "yellow", "down": "red", "embedded": "cyan"}
    table = Table(title="engines", title_justify="left", expand=False)
    for column in ("engine", "kind", "state", "model", "port", "pid", "uptime", "note"):
        table.add_column(column)
    for e in report.engines:
        note = e.detail if e.in_use else ("not used by this profile" + (f"; {e.detail}" if e.detail else ""))
        table.add_row(e.name, e.kind, Text(e.state, style=colours.get(e.state, "")), e.model,
                      str(e.port or "—"), str(e.pid or "—"), format_uptime(e.uptime_s), note)
    lines = []
    if report.gpus:
        for gpu in report.gpus:
            used = f"{gpu.used_bytes / GIB:.1f}" if gpu.used_bytes is not None else "?"
            lines.append(f"GPU {gpu.index} {gpu.name}: {used} / {gpu.total_gb:.1f} GB ({gpu.source})")
    else:
        lines.append("GPU: none found (NVML / nvidia-smi)")
    lines.append(f"RAM: {report.ram_used_bytes / GIB:.1f} / {report.ram_total_bytes / GIB:.1f} GB")
    if report.latency:
        lines.append(f"voice-to-voice (last {report.latency.turns} turns): p50 {report.latency.p50_ms:.0f} ms, "
                     f"p95 {report.latency.p95_ms:.0f} ms")
    else:
        lines.append("voice-to-voice: no turns recorded yet")
    return Group(table, *(Text(line) for line in lines))
