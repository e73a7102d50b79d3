"""No spoken sentence is lost: three separate questions 2.6 s apart (Japanese, English, Japanese) in one WAV, through
`saijin run` with real Whisper, each become their own user turn — on the page's event stream and in
`saijin memory show` — and each is answered. Once with a quick engine and the replies spoken (each reply is heard
before the next question), once with a slow engine and the file read as fast as possible (the later questions
come while the first is still being answered: they keep their own turns and are answered after it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from assistant.audio.wavfile import write_wav
from tests.fixtures.llm import ChatPeer, serving
from tests.fixtures.speech import SpeechMaker, cer, speech_span, wer
from tests.reliability.conftest import RATE, run_saijin, saijin_argv, saijin_env, use_fast_voices

pytestmark = pytest.mark.slow

SAID = [("ja", "こんばんは、今日はちょっと疲れちゃった。"), ("en", "Could you tell me something nice about today?"),
        ("ja", "明日は早く起きなきゃいけないんだ。")]
REPLIES = ["Good evening, you worked hard.", "The sky was clear today.", "Then sleep early tonight."]
GAP_S = 2.6


@pytest.fixture(scope="module")
def three_questions_wav(tmp_path_factory: pytest.TempPathFactory, speech_maker: SpeechMaker) -> Path:
    """The three utterances, each one's speech 2.6 s after the end of the one before."""
    pieces = [np.zeros(int(0.5 * RATE), dtype=np.float32)]
    for language, text in SAID:
        clip = speech_maker.japanese(text) if language == "ja" else speech_maker.english(text)
        start, end = speech_span(clip.samples)
        pieces += [clip.samples[int(start * RATE):int(end * RATE)], np.zeros(int(GAP_S * RATE), dtype=np.float32)]
    return write_wav(tmp_path_factory.mktemp("speech") / "three-questions.wav", np.concatenate(pieces), RATE)


@pytest.fixture
async def quick_peer() -> AsyncIterator[ChatPeer]:
    async with serving(ChatPeer(replies=list(REPLIES))) as peer:
        yield peer


async def _run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*saijin_argv(*args), env=saijin_env(), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=600)
    return proc.returncode or 0, out.decode(), err.decode()


def _check_every_question_heard_and_answered(events_path: Path, config: Path, peer: ChatPeer) -> None:
    events = [json.loads(line) for line in events_path.read_text(encoding="utf-8").splitlines()]
    heard = [e for e in events if e["type"] == "user-transcript"]
    assert len(heard) == 3, [e["text"] for e in heard]
    for event, (language, text) in zip(heard, SAID, strict=True):
        assert event["language"] == language
        assert (cer(text, event["text"]) if language == "ja" else wer(text, event["text"])) <= 0.3, event["text"]
    turns = [e["turn_id"] for e in heard]
    assert len(set(turns)) == 3
    answered = {e["turn_id"] for e in events if e["type"] == "subtitle"}
    assert set(turns) <= answered
    # Each question was asked of the engine once, with its own words last (besides the one-token warm-up).
    asked = [r for r in peer.requests if r.body.get("max_tokens") != 1]
    assert len(asked) == 3
    for request, event in zip(asked, heard, strict=True):
        assert event["text"] in request.user_text

    shown = run_saijin("memory", "show", "--limit", "20", "--config", str(config), "--profile", "cpu")
    assert shown.returncode == 0, shown.stderr
    for event in heard:
        assert event["text"] in shown.stdout, shown.stdout
    # Each answer is remembered as far as it was heard (the next question may have cut a long one short).
    answers = [line for line in shown.stdout.splitlines() if " assistant " in line]
    assert len(answers) == 3, shown.stdout
    for line in answers:
        remembered = line.split(" assistant ", 1)[1].split("  (")[0].strip().rstrip("…")
        assert remembered and any(reply.startswith(remembered) for reply in REPLIES), shown.stdout


async def test_three_questions_spoken_in_real_time_each_get_their_turn_and_a_spoken_answer(
        quiet_config: Path, three_questions_wav: Path, quick_peer: ChatPeer, tmp_path: Path) -> None:
    use_fast_voices(quiet_config)
    events = tmp_path / "events.jsonl"
    code, _out, err = await _run("run", "--input", str(three_questions_wav), "--output", str(tmp_path / "reply.wav"),
                                "--llm-url", quick_peer.base_url, "--llm-model", "peer", "--events", str(events),
                                "--config", str(quiet_config), "--profile", "cpu")
    assert code == 0 and "Traceback" not in err, err[-3000:]
    _check_every_question_heard_and_answered(events, quiet_config, quick_peer)


async def test_questions_asked_while_a_slow_engine_answers_keep_their_turns_and_are_answered_in_order(
        quiet_config: Path, three_questions_wav: Path, quick_peer: ChatPeer, tmp_path: Path) -> None:
    quick_peer.first_token_delay = 4.0  # slower than the pauses between the questions
    events = tmp_path / "events.jsonl"
    code, _out, err = await _run("run", "--input", str(three_questions_wav), "--no-voice",
                                "--llm-url", quick_peer.base_url, "--llm-model", "peer", "--events", str(events),
                                "--config", str(quiet_config), "--profile", "cpu")
    assert code == 0 and "Traceback" not in err, err[-3000:]
    _check_every_question_heard_and_answered(events, quiet_config, quick_peer)
    # Nothing was cancelled: the later questions waited for their answers.
    assert not [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()
                if json.loads(line)["type"] == "interrupted"]
