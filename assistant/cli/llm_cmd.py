"""`saijin llm serve|command|status|stop|wait [ENGINE]`: run, print, check and stop the vLLM engines of routing.yaml."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time

from assistant.config.loader import Settings, load_settings
from assistant.errors import EngineUnavailable, UsageError
from assistant.ops.engines import engines_in_use, probe_engine_async
from assistant.ops.ports import port_owner
from assistant.ops.vllm import (
    VllmProcess,
    format_command,
    launch_command,
    running_state,
    state_path,
    stop_process_group,
    vllm_engine,
    vllm_engine_names,
    vllm_environment,
)

HELP = "start / print / check / stop the vLLM engines of routing.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("serve", "command", "status", "stop", "wait"),
                        help="serve: start and wait until ready; command: print the command line; status: engine "
                             "states; stop: stop engines Saijin started; wait: wait until an engine serves")
    parser.add_argument("engine", nargs="?", metavar="ENGINE", help="a routing.yaml engine name (default: all that apply)")
    parser.add_argument("--detach", action="store_true", help="serve: leave the engine running in the background")
    parser.add_argument("--timeout", type=float, metavar="S", help="serve/wait: seconds to wait for readiness")
    parser.add_argument("--json", action="store_true", help="status: print JSON")


async def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, args.profile)
    if args.action == "command":
        return _command(settings, args.engine)
    if args.action == "status":
        from assistant.cli.status_cmd import print_engines

        return await print_engines(settings, args.engine, as_json=args.json)
    if args.action == "stop":
        return _stop(settings, args.engine)
    if args.action == "wait":
        return await _wait(settings, args.engine, args.timeout)
    return await _serve(settings, args.engine, args.detach, args.timeout)


def _chosen(settings: Settings, engine: str | None, default: list[str]) -> list[str]:
    if engine:
        vllm_engine(settings, engine)
        return [engine]
    if not default:
        raise UsageError(f"no vLLM engine applies (profile {settings.profile}) — name one: "
                         f"{', '.join(vllm_engine_names(settings)) or 'routing.yaml has none'}")
    return default


def _command(settings: Settings, engine: str | None) -> int:
    for name in _chosen(settings, engine, vllm_engine_names(settings)):
        config = vllm_engine(settings, name)
        command = launch_command(settings, name)
        print(format_command(command, vllm_environment(config)))
    return 0


def _serve_default(settings: Settings) -> list[str]:
    in_use = [n for n in engines_in_use(settings) if settings.routing.engines[n].kind == "vllm"]
    return [n for n in in_use if settings.routing.engines[n].resident] or in_use


async def _serve(settings: Settings, engine: str | None, detach: bool, timeout: float | None) -> int:
    names = _chosen(settings, engine, _serve_default(settings))
    started: list[VllmProcess] = []
    try:
        for name in names:
            config = settings.routing.engines[name]
            state = running_state(settings, name)
            if state is not None:
                print(f"{name}: already running (pid {state.pid}, log {state.log})")
                continue
            probe = await probe_engine_async(config)
            if probe.state != "down":
                print(f"{name}: already serving at {config.base_url} ({probe.state}; started outside Saijin)")
                continue
            launch = config.launch
            assert launch is not None
            owner = port_owner(launch.host, launch.port)
            if owner:
                raise EngineUnavailable(f"{name}: port {launch.port} on {launch.host} is in use by {owner} — "
                                        f"stop it or change engines.{name}.launch.port (and base_url) in routing.yaml")
            process = VllmProcess(settings, name)
            process.start()
            started.append(process)
            print(f"{name}: starting vLLM (pid {process.pid}, log {process.log_path}) ...", flush=True)
        for process in started:
            began = time.monotonic()
            await process.wait_ready(timeout)
            print(f"{process.name}: ready at {process.engine.base_url} serving {process.engine.model!r} "
                  f"after {time.monotonic() - began:.0f} s", flush=True)
        if detach or not started:
            if detach and started:
                print("stop with: saijin llm stop" + (f" {engine}" if engine else ""))
            started.clear()  # leave them running
            return 0
        return await _supervise(started)
    finally:
        for process in started:
            await process.stop()


async def _supervise(processes: list[VllmProcess]) -> int:
    """Stay in the foreground until an engine dies (report it, exit 1) or we are told to stop (exit 0)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
    print("serving; press Ctrl-C to stop", flush=True)
    while not stopping.is_set():
        for process in processes:
            if not process.is_running():
                raise EngineUnavailable(process.death_report())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), 1.0)
    return 0


def _stop(settings: Settings, engine: str | None) -> int:
    names = [engine] if engine else vllm_engine_names(settings)
    stopped = 0
    for name in names:
        vllm_engine(settings, name)
        state = running_state(settings, name)
        if state is None:
            if engine:
                print(f"{name}: not running under Saijin (nothing to stop)")
            continue
        stop_process_group(state.pid, timeout=30)
        state_path(settings, name).unlink(missing_ok=True)
        print(f"{name}: stopped (pid {state.pid})")
        stopped += 1
    if not stopped and not engine:
        print("no engine started by Saijin is running")
    return 0


async def _wait(settings: Settings, engine: str | None, timeout: float | None) -> int:
    if not engine:
        raise UsageError("wait needs an ENGINE, e.g. `saijin llm wait AI_1`")
    config = vllm_engine(settings, engine)
    assert config.launch is not None
    limit = timeout if timeout is not None else config.launch.startup_timeout_s
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        probe = await probe_engine_async(config)
        if probe.state == "up" and probe.lists(config.model):
            print(f"{engine}: ready at {config.base_url}")
            return 0
        await asyncio.sleep(1.0)
    raise EngineUnavailable(f"{engine} did not become ready at {config.base_url} within {limit:.0f} s — "
                            f"see its log or `saijin doctor`")
