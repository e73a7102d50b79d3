"""The LLM engine fails under a running assistant: a real vLLM server is killed mid-reply, stays down for a turn,
then comes back on the same port. The assistant apologises at once, falls back to the embedded engine, and
uses vLLM again without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from assistant.config import load_settings
from assistant.events import Event, Notice, StageTiming, Subtitle
from assistant.memory.store import MemoryStore
from assistant.pipeline.assemble import Conversation, Options
from tests.fixtures.ops import tiny_vllm_engine, write_routing
from tests.fixtures.vllm import VllmServer, free_port, start_vllm
from tests.reliability.conftest import edit_yaml, keep_own_routing

pytestmark = pytest.mark.slow

#: DESIGN §7 / issue 9: after the engine dies, the user hears something within this many seconds.
RECOVERY_S = 2.0


def _generated_tokens(server: VllmServer) -> float:
    text = httpx.get(server.base_url.removesuffix("/v1") + "/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:generation_tokens_total"))


def _kill_group(server: VllmServer) -> None:
    """kill -9 the API server and its engine processes (its own process group), as a crash would."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.process.wait(30)


def _user_and_assistant_texts(db: Path, persona: str) -> list[tuple[str, str]]:
    with MemoryStore(db) as store:
        return [(t.role, t.text) for t in store.turns(persona)]


async def test_engine_killed_mid_reply_falls_back_and_is_used_again_after_restart(
        vllm_available: None, tiny_llama_dir: Path, quiet_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    # AI_1 is the real vLLM server (run outside the assistant, as a systemd unit would), AI_2 the embedded model.
    ai_1 = tiny_vllm_engine(tiny_llama_dir, port, "tiny-llama", timeout_s=30, first_token_timeout_s=20,
                            generation={"temperature": 0.8, "max_tokens": 700, "extra": {"ignore_eos": True}})
    write_routing(quiet_config, {"AI_1": ai_1}, default="AI_1", fallback=["AI_1", "AI_2"],
                  personas={"yuuri": "AI_1", "miyu": "AI_1"})
    edit_yaml(quiet_config / "routing.yaml", {"engines": {"AI_2": {"generation": {"max_tokens": 40}}}})
    keep_own_routing(quiet_config)
    # A long reply (the tiny model rambles), so the kill lands in the middle of it.
    edit_yaml(quiet_config / "rules.yaml", {"max_reply_chars": 6000})
    monkeypatch.setenv("SAIJIN_EXTERNAL_ENGINES", "AI_1")  # the assistant must never launch vLLM itself here
    settings = load_settings(quiet_config, "cpu")
    apologies = settings.personas["yuuri"].lines["engine_down"]
    db = settings.data_path(settings.assistant.memory.database)

    server = start_vllm(tiny_llama_dir, port, "tiny-llama")
    try:
        subtitles: list[tuple[float, Subtitle]] = []
        notices: list[tuple[float, Notice]] = []
        first_token = asyncio.Event()
        conversation = Conversation(settings, Options(persona="yuuri", output="none"))

        def on_event(event: Event) -> None:
            if isinstance(event, StageTiming) and event.stage == "llm_first_token":
                first_token.set()
            if isinstance(event, Subtitle):
                subtitles.append((time.monotonic(), event))
            elif isinstance(event, Notice):
                notices.append((time.monotonic(), event))

        conversation.bus.subscribe(on_event)
        async with conversation:
            # The fallback model is loaded once beforehand: what is measured is noticing the failure and switching.
            await asyncio.to_thread(conversation.router.engine("AI_2").load)

            # 1. vLLM answers; kill -9 it while the reply streams.
            turn = asyncio.create_task(conversation.say("長いお話を聞かせてください。", timeout=180))
            # The tiny model writes hundreds of tokens a second: kill at the first token, or the whole reply
            # may already sit in the socket buffer (generated, sent, just not read yet) when the kill lands.
            deadline = time.monotonic() + 120
            while not first_token.is_set() and not turn.done() and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            assert first_token.is_set(), "vLLM never started answering"
            killed_at = time.monotonic()
            _kill_group(server)
            first = await turn
            assert not turn.cancelled()
            after_kill = [(at, s) for at, s in subtitles if s.turn_id == first.turn_id and at >= killed_at]
            apology = [(at, s) for at, s in after_kill if s.text in apologies]
            assert apology, f"no engine_down line after the kill: {[s.text for _, s in after_kill][:5]}"
            assert apology[0][0] - killed_at < RECOVERY_S, f"apology {apology[0][0] - killed_at:.2f} s after the kill"
            assert apology[0][1].is_scripted
            assert len(first.errors) == 1 and str(port) in first.errors[0], first.errors
            assert not first.is_interrupted and not first.is_dropped
            assert first.sentences[-1] in apologies  # the apology ends what was said (which stays)

            # 2. vLLM is down: the user is told at once, the embedded engine answers, and only once is it said.
            asked_at = time.monotonic()
            second = await conversation.say("こんにちは。", timeout=180)
            assert second.errors == [], second.errors
            assert len(second.notices) == 1 and "AI_1" in second.notices[0], second.notices
            told_at = next(at for at, n in notices if n.turn_id == second.turn_id)
            assert told_at - asked_at < RECOVERY_S, f"the fallback notice came {told_at - asked_at:.2f} s after asking"
            assert second.sentences, "the fallback engine said nothing"
            third = await conversation.say("ありがとう。", timeout=180)
            assert third.sentences and third.notices == [] and third.errors == []  # told once per outage

            # 3. vLLM comes back on the same port: the very next turn is its again, without a restart.
            server = start_vllm(tiny_llama_dir, port, "tiny-llama")
            assert _generated_tokens(server) == 0
            fourth = await conversation.say("また会えましたね。", timeout=180)
            assert fourth.errors == [] and fourth.notices == [], (fourth.errors, fourth.notices)
            assert fourth.sentences
            assert _generated_tokens(server) > 0, "the restarted vLLM was not asked"
            await conversation.pipeline.wait_idle()

        # Nothing the user said was lost, and the cut reply is remembered with its apology.
        stored = _user_and_assistant_texts(db, "yuuri")
        users = [text for role, text in stored if role == "user"]
        assert users == ["長いお話を聞かせてください。", "こんにちは。", "ありがとう。", "また会えましたね。"]
        replies = [text for role, text in stored if role == "assistant"]
        assert len(replies) == 4 and any(a in replies[0] for a in apologies)
    finally:
        server.stop()
