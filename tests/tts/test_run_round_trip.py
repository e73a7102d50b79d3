"""`saijin run --input some_english.wav --output reply.wav`: the spoken reply, transcribed back by the real
Whisper model, is the reply text printed on screen (issue 4, done-when)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from assistant.audio.wavfile import read_wav
from tests.fixtures.core import english_piper_setup, saijin
from tests.fixtures.speech import wer

pytestmark = pytest.mark.slow


def test_the_reply_wav_says_the_printed_reply(speech_maker, whisper_tiny_en, tmp_path: Path,
                                              config_dir: Path) -> None:
    pytest.importorskip("llama_cpp")
    english_piper_setup(config_dir, max_tokens=30)
    clip = speech_maker.english("Hello! What is your favourite season of the year?")
    source = speech_maker.compose(0.8, clip, 1.5).write(tmp_path / "in.wav")
    out = tmp_path / "reply.wav"
    proc = saijin("run", "--input", str(source), "--output", str(out), "--config", str(config_dir), "--profile", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = re.findall(r"^\[turn \d+\] 悠璃: (.+)$", proc.stdout, flags=re.M)
    assert printed, proc.stdout
    heard = whisper_tiny_en.transcribe(read_wav(out)).text
    assert wer(" ".join(printed), heard) <= 0.35, (printed, heard)
