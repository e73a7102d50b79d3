"""Privacy (DESIGN §7): during demo-like runs the assistant opens no network connection except to its configured
engine URLs and its own bridge. Watched from outside the process: every connect()/sendto()/sendmsg() of the
command and all its threads and children, traced by strace, with the Hugging Face hub *allowed* (so code that
would reach a hub shows up as a connection)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from assistant.audio.wavfile import read_wav, write_wav
from assistant.config import load_settings
from tests.fixtures.vllm import VllmServer, free_port
from tests.reliability.conftest import RATE, ROOT, edit_yaml, open_page, saijin_argv, saijin_env, with_silence

pytestmark = pytest.mark.slow

SYSCALLS = "connect,sendto,sendmsg,sendmmsg"
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
_INET = re.compile(r'sa_family=AF_INET, sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"\)')
_INET6 = re.compile(r'sa_family=AF_INET6, sin6_port=htons\((\d+)\).*?inet_pton\(AF_INET6, "([^"]+)"')
_SYSCALL = re.compile(r"^(\d+)\s+(\w+)\(")


@dataclass(frozen=True)
class Connection:
    """One network address a traced process tried to reach."""

    pid: int
    syscall: str
    host: str
    port: int
    line: str

    def __str__(self) -> str:
        return f"{self.syscall} to {self.host}:{self.port} (pid {self.pid}): {self.line[:200]}"


def network_connections(trace: Path) -> list[Connection]:
    """Every AF_INET/AF_INET6 address in an strace log (AF_UNIX, netlink and the like are local: not listed)."""
    found: list[Connection] = []
    for line in trace.read_text(encoding="utf-8", errors="replace").splitlines():
        call = _SYSCALL.match(line)
        address = _INET.search(line) or _INET6.search(line)
        if call is None or address is None:
            continue
        found.append(Connection(int(call.group(1)), call.group(2), address.group(2), int(address.group(1)), line))
    return found


def unexpected(connections: Iterable[Connection], allowed_ports: set[int]) -> list[Connection]:
    """The connections that are not to this machine's loopback on an allowed port."""
    return [c for c in connections if not (c.host in LOOPBACK and c.port in allowed_ports)]


def traced(argv: Sequence[str], trace: Path) -> list[str]:
    """``argv`` under strace, following every thread and child, logging the network calls to ``trace``."""
    strace = shutil.which("strace")
    assert strace, "strace is not installed (bash .ci/setup --test installs it)"
    return [strace, "-f", "--seccomp-bpf", "-qq", "-e", "signal=none", "-e", f"trace={SYSCALLS}", "-o", str(trace),
            *argv]


def hub_allowed_env() -> dict[str, str]:
    """The test environment with the Hugging Face hub switched on: code that would reach it now tries."""
    env = saijin_env(HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0")
    env.pop("HF_DATASETS_OFFLINE", None)
    return env


def engine_ports(config_dir: Path, profile: str = "cpu") -> set[int]:
    """The ports of every engine URL configured in routing.yaml (as the profile leaves it)."""
    from urllib.parse import urlsplit

    routing = load_settings(config_dir, profile).routing
    return {urlsplit(e.base_url).port or 80 for e in routing.engines.values() if e.base_url}


@pytest.fixture(scope="module")
def tracer_works(tmp_path_factory: pytest.TempPathFactory) -> None:
    """strace can trace here, and it sees a connection a child thread makes (or the test would prove nothing)."""
    trace = tmp_path_factory.mktemp("strace") / "probe.txt"
    probe = ("import socket, threading\n"
             "def go():\n"
             "    s = socket.socket(); s.settimeout(0.2)\n"
             "    try: s.connect(('10.255.255.1', 9))\n"
             "    except OSError: pass\n"
             "t = threading.Thread(target=go); t.start(); t.join()\n")
    proc = subprocess.run(traced([sys.executable, "-c", probe], trace), capture_output=True,
                          text=True, timeout=60)
    if proc.returncode != 0 and "ptrace" in proc.stderr:
        pytest.skip(f"this machine does not allow ptrace: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    seen = unexpected(network_connections(trace), set())
    assert [(c.host, c.port) for c in seen] == [("10.255.255.1", 9)], [str(c) for c in seen]


@pytest.fixture(scope="module")
def spoken_sample(tmp_path_factory: pytest.TempPathFactory, speech_maker) -> Path:
    """A Japanese and an English utterance, as the demo plays them."""
    japanese = speech_maker.japanese("こんばんは、きょうもお疲れ様。")
    english = speech_maker.english("Hello, how are you today?")
    path = tmp_path_factory.mktemp("privacy") / "sample.wav"
    return write_wav(path, with_silence(0.3, japanese.samples, 3.0, english.samples, 1.5), RATE)


def test_the_tracer_flags_foreign_addresses_and_passes_allowed_ones(tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    trace.write_text(
        '11 connect(3, {sa_family=AF_INET, sin_port=htons(8000), sin_addr=inet_addr("127.0.0.1")}, 16) = 0\n'
        '11 connect(4, {sa_family=AF_UNIX, sun_path="/run/x.sock"}, 110) = 0\n'
        '12 connect(5, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("127.0.0.53")}, 16) = 0\n'
        '12 sendto(6, "q", 1, 0, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "2606:4700::1", &sin6_addr), sin6_scope_id=0}, 28) = 1\n'
        '13 connect(7, {sa_family=AF_INET, sin_port=htons(9999), sin_addr=inet_addr("127.0.0.1")}, 16) = -1\n',
        encoding="utf-8")
    flagged = unexpected(network_connections(trace), {8000})
    assert [(c.host, c.port) for c in flagged] == [("127.0.0.53", 53), ("2606:4700::1", 443), ("127.0.0.1", 9999)]


def test_a_spoken_run_from_a_wav_connects_nowhere(tracer_works: None, quiet_config: Path, tmp_path: Path,
                                                  spoken_sample: Path) -> None:
    trace, out = tmp_path / "trace.txt", tmp_path / "out.wav"
    argv = saijin_argv("run", "--input", str(spoken_sample), "--output", str(out), "--config", str(quiet_config),
                       "--profile", "cpu")
    proc = subprocess.run(traced(argv, trace), capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env=hub_allowed_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("悠璃:") >= 1 and out.stat().st_size > 44, proc.stdout
    foreign = unexpected(network_connections(trace), engine_ports(quiet_config))
    assert not foreign, "the assistant reached out:\n" + "\n".join(map(str, foreign[:20]))


def test_the_full_demo_connects_nowhere(tracer_works: None, quiet_config: Path, tmp_path: Path) -> None:
    """`saijin demo` — models prepared, both sample turns spoken, the bridge up — reaches no address at all
    (its engine is embedded; its bridge only listens)."""
    trace, out = tmp_path / "trace.txt", tmp_path / "demo-out"
    argv = saijin_argv("demo", "--config", str(quiet_config), "--out", str(out))
    proc = subprocess.run(traced(argv, trace), capture_output=True, text=True, timeout=900, cwd=ROOT,
                          env=hub_allowed_env(), stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "voice to voice" in proc.stdout and "avatar page" in proc.stdout, proc.stdout[-3000:]
    assert list(out.glob("turn-*.wav")), proc.stdout[-3000:]
    foreign = unexpected(network_connections(trace), engine_ports(quiet_config))
    assert not foreign, "the demo reached out:\n" + "\n".join(map(str, foreign[:20]))


def _child_of(pid: int, timeout: float = 30) -> int:
    """The process strace started (its only child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError("strace did not start the command")


async def _wait_for_port(port: int, process: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the assistant exited: {process.stderr.read() if process.stderr else ''}"
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.close()
        return
    raise AssertionError(f"the bridge never listened on {port}")


async def test_a_conversation_through_the_page_connects_only_to_its_bridge(
        tracer_works: None, quiet_config: Path, tmp_path: Path, spoken_sample: Path) -> None:
    bridge_port = free_port()
    edit_yaml(quiet_config / "assistant.yaml", {"bridge": {"port": bridge_port}})
    trace = tmp_path / "trace.txt"
    argv = saijin_argv("run", "--input", "browser", "--output", "browser", "--config", str(quiet_config),
                       "--profile", "cpu")
    process = subprocess.Popen(traced(argv, trace), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=ROOT, env=hub_allowed_env())
    try:
        saijin = _child_of(process.pid)
        await _wait_for_port(bridge_port, process)
        page = await open_page(f"ws://127.0.0.1:{bridge_port}/ws", "page")
        await page.speak(read_wav(spoken_sample))
        await page.wait_for(lambda m: m["type"] == "audio", timeout=240)
        await page.wait_for(lambda m: m["type"] == "state" and m["value"] == "listening",
                            after=len(page.messages) - 1, timeout=240)
        await page.ws.close()
        await page.reader
        os.kill(saijin, signal.SIGINT)  # Ctrl-C
        _out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert "Traceback" not in err, err[-3000:]
    foreign = unexpected(network_connections(trace), engine_ports(quiet_config) | {bridge_port})
    assert not foreign, "the assistant reached out:\n" + "\n".join(map(str, foreign[:20]))


def test_chat_with_a_vllm_engine_connects_only_to_that_engine(tracer_works: None, vllm_server: VllmServer,
                                                              quiet_config: Path, tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    argv = saijin_argv("chat", "--say", "こんにちは", "--no-voice", "--llm-url", vllm_server.base_url, "--llm-model",
                       vllm_server.model, "--config", str(quiet_config), "--profile", "cpu")
    proc = subprocess.run(traced(argv, trace), capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=hub_allowed_env())
    # (The tiny random model's reply may clean to nothing speakable; what counts here is where it connected.)
    assert proc.returncode == 0, proc.stderr[-3000:]
    connections = network_connections(trace)
    assert any(c.port == vllm_server.port for c in connections), "the engine was never reached: is strace blind?"
    foreign = unexpected(connections, {vllm_server.port})
    assert not foreign, "the assistant reached out:\n" + "\n".join(map(str, foreign[:20]))
