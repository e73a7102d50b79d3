"""Bad input of every kind gets one clear line and loses nothing: WAV files that are not usable audio, config
files with each kind of error (through the real command line), and a model that writes markdown, emoji, code,
URLs, endless sentences and unbalanced [tags] (through the real reply stage, voice and memory)."""

from __future__ import annotations

import asyncio
import struct
import unicodedata
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from assistant.config import load_settings
from assistant.events import Audio, Event, Subtitle
from assistant.memory.store import MemoryStore
from assistant.pipeline.assemble import Conversation, Options
from tests.fixtures.llm import ChatPeer
from tests.reliability.conftest import assert_one_clear_line, run_saijin, use_fast_voices

# --------------------------------------------------------------------------------------------------
# WAV files
# --------------------------------------------------------------------------------------------------


def _wav_header(data_bytes: int, rate: int = 16000, channels: int = 1, bits: int = 16, code: int = 1) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", code, channels, rate, rate * block, block, bits)
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", data_bytes))


def _speech_like(seconds: float) -> bytes:
    t = np.arange(int(16000 * seconds)) / 16000
    return (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes()


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _cut_in_header(path: Path) -> None:
    path.write_bytes(_wav_header(32000)[:20])


def _cut_in_audio(path: Path) -> None:
    path.write_bytes(_wav_header(16000 * 2 * 3) + _speech_like(1.0))  # promises 3 s, holds 1 s


def _no_samples(path: Path) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)


def _huge(path: Path) -> None:
    """Five hours of 48 kHz stereo by its header: a sparse file, so the test machine's disk is not filled."""
    data = 48000 * 2 * 2 * 5 * 3600
    with path.open("wb") as out:
        out.write(_wav_header(min(data, 0xFFFFFFF0), rate=48000, channels=2))
        out.truncate(44 + min(data, 0xFFFFFFF0))


def _text(path: Path) -> None:
    path.write_text("これは音声ではありません。\nThis is a shopping list, not audio.\n", encoding="utf-8")


def _mp3(path: Path) -> None:
    path.write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 8)


def _png(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200))


def _noise_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _adpcm(path: Path) -> None:
    path.write_bytes(_wav_header(4000, bits=4, code=0x0011) + bytes(4000))


def _a_folder(path: Path) -> None:
    path.mkdir()


BAD_WAVS: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty": (_empty, "empty"),
    "cut-in-header": (_cut_in_header, "truncated"),
    "cut-in-audio": (_cut_in_audio, "truncated"),
    "no-samples": (_no_samples, "no audio"),
    "five-hours": (_huge, "limit"),
    "text": (_text, "not a WAV file"),
    "mp3": (_mp3, "MP3"),
    "png": (_png, "not a WAV file"),
    "random-bytes": (_noise_bytes, "not a WAV file"),
    "adpcm": (_adpcm, "not supported"),
    "folder": (_a_folder, "not a file"),
}


@pytest.mark.parametrize("case", sorted(BAD_WAVS))
def test_a_bad_wav_input_is_exit_2_with_one_line(case: str, quiet_config: Path, tmp_path: Path) -> None:
    make, expected = BAD_WAVS[case]
    source = tmp_path / f"{case}.wav"
    make(source)
    out = tmp_path / "out.wav"
    proc = run_saijin("run", "--input", str(source), "--output", str(out), "--config", str(quiet_config),
                      "--profile", "cpu", timeout=180)
    assert_one_clear_line(proc, 2, str(source), expected)
    assert not out.exists(), "a reply file was written for input that could not be read"
    assert proc.stdout == ""


# --------------------------------------------------------------------------------------------------
# config files, through the command line
# --------------------------------------------------------------------------------------------------


def _set(path: Path, change: Callable[[dict], None]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _syntax(config: Path) -> tuple[Path, str]:
    path = config / "assistant.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "\nvad: {aggressiveness: [2\n", encoding="utf-8")
    return path, "line "


def _unknown_key(config: Path) -> tuple[Path, str]:
    path = config / "personas" / "miyu.yaml"
    _set(path, lambda d: d["voice"].__setitem__("pitch", 3))
    return path, "voice.pitch"


def _out_of_range(config: Path) -> tuple[Path, str]:
    path = config / "assistant.yaml"
    _set(path, lambda d: d["vad"].__setitem__("aggressiveness", 7))
    return path, "vad.aggressiveness"


def _wrong_type(config: Path) -> tuple[Path, str]:
    path = config / "assistant.yaml"
    _set(path, lambda d: d["memory"].__setitem__("recall_limit", "many"))
    return path, "memory.recall_limit"


def _missing_field(config: Path) -> tuple[Path, str]:
    path = config / "personas" / "yuuri.yaml"
    _set(path, lambda d: d.pop("voice"))
    return path, "voice"


def _missing_file(config: Path) -> tuple[Path, str]:
    path = config / "rules.yaml"
    path.unlink()
    return path, "not found"


def _bad_choice(config: Path) -> tuple[Path, str]:
    path = config / "routing.yaml"
    _set(path, lambda d: d["engines"]["AI_1"].__setitem__("kind", "tensorrt"))
    return path, "AI_1"


def _not_a_mapping(config: Path) -> tuple[Path, str]:
    path = config / "routing.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    return path, "routing.yaml"


CONFIG_ERRORS: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "yaml-syntax": _syntax,
    "unknown-key": _unknown_key,
    "out-of-range": _out_of_range,
    "wrong-type": _wrong_type,
    "missing-field": _missing_field,
    "missing-file": _missing_file,
    "bad-choice": _bad_choice,
    "not-a-mapping": _not_a_mapping,
}

COMMANDS: dict[str, list[str]] = {
    "chat": ["chat", "--say", "こんにちは", "--no-voice"],
    "run": ["run", "--input", "{wav}", "--output", "{out}"],
    "memory": ["memory", "show"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("error", sorted(CONFIG_ERRORS))
def test_a_config_error_stops_each_command_with_one_line(error: str, command: str, config_dir: Path,
                                                         tmp_path: Path, two_turns_wav: Path) -> None:
    path, needle = CONFIG_ERRORS[error](config_dir)
    args = [a.format(wav=two_turns_wav, out=tmp_path / "out.wav") for a in COMMANDS[command]]
    proc = run_saijin(*args, "--config", str(config_dir), "--profile", "cpu", timeout=120)
    assert_one_clear_line(proc, 2, path.name, needle)
    assert not (tmp_path / "data").exists(), "a broken config still created the data folder"
    assert not (tmp_path / "out.wav").exists()


def test_an_unknown_profile_and_an_unknown_persona_are_one_line(config_dir: Path) -> None:
    proc = run_saijin("chat", "--say", "hi", "--config", str(config_dir), "--profile", "turbo", timeout=120)
    assert_one_clear_line(proc, 2, "turbo", "cpu")
    proc = run_saijin("chat", "--say", "hi", "--persona", "nobody", "--config", str(config_dir), "--profile", "cpu",
                      timeout=120)
    assert_one_clear_line(proc, 2, "nobody", "miyu")


# --------------------------------------------------------------------------------------------------
# what the model writes
# --------------------------------------------------------------------------------------------------

MARKDOWN = ("# 今日のまとめ\n\n**大事なこと**は、よく眠ることです。\n\n- 早く寝る\n- 水を飲む\n\n| 項目 | 時間 |\n|---|---|\n"
            "| 睡眠 | 八時間 |\n\n> 引用ではありません。\n\n1. 一つ目\n2. 二つ目\n\n__下線__と~~取り消し~~もあります。")
EMOJI = "こんにちは😊✨！今日はいい天気ですね🌞🌈。楽しんでね👍❤️‍🔥🇯🇵 またね👋🏽"
CODE = ("これがその関数です。\n```python\ndef secret_function(x):\n    return x * 42\n```\n"
        "インラインの`rm -rf /`は読みません。以上です。")
URLS = ("詳しくは https://example.com/path?q=1&r=2 を見てください。 www.example.org もどうぞ。"
        "[公式サイト](https://docs.example.net/a/b) にも書いてあります。")
TAGS = "[joy]こんにちは。[sad 今日は[unknown]元気[ですか。[[[ ]]] それと<b>太字</b>です。[relaxed"
ENDLESS = "あ" * 97 + "い" * 3  # repeated forever: one sentence that never ends
MIXED = "**ねえ**、見て👀 https://spam.example/x?y=z `code` [joy] すごいでしょ！ "  # repeated forever

URL_PIECES = ("http", "www.", "://", ".com", ".org", ".net", "example")
MARKUP = set("*#`|<>[]{}") | {"~~", "__"}


def _is_pictograph(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category in ("So", "Cs", "Co") or 0xFE00 <= ord(ch) <= 0xFE0F or ord(ch) in (0x200D, 0x20E3)


def _problems(text: str, banned: tuple[str, ...]) -> list[str]:
    found = [f"markup {m!r}" for m in MARKUP if m in text]
    found += [f"url piece {p!r}" for p in URL_PIECES if p in text.lower()]
    found += [f"pictograph {ch!r}" for ch in text if _is_pictograph(ch)]
    found += [f"{b!r} spoken" for b in banned if b in text]
    return found


BAD_REPLIES: dict[str, tuple[str, bool, tuple[str, ...], tuple[str, ...]]] = {
    # name: (reply, repeats forever, words that must be spoken, text that must not be)
    "markdown": (MARKDOWN, False, ("大事なこと", "よく眠ること", "早く寝る", "八時間"), ("---",)),
    "emoji": (EMOJI, False, ("こんにちは", "いい天気", "楽しんでね"), ()),
    "code": (CODE, False, ("関数です", "以上です"), ("def ", "secret_function", "return", "42", "python")),
    "urls": (URLS, False, ("見てください", "もどうぞ", "公式サイト"), ("path", "q=1", "docs")),
    "tags": (TAGS, False, ("こんにちは", "元気", "太字"), ("unknown", "relaxed")),
    "endless": (ENDLESS, True, ("あああ",), ()),
    "mixed-endless": (MIXED, True, ("ねえ", "すごいでしょ"), ("spam", "y=z")),
}
VOICED = ("markdown", "tags")


@pytest.mark.parametrize("case", sorted(BAD_REPLIES))
async def test_bad_model_output_is_spoken_clean_and_bounded(
        case: str, quiet_config: Path, tmp_path: Path, start_chat_peer: Callable[..., Awaitable[ChatPeer]]) -> None:
    reply, is_endless, must_say, must_not_say = BAD_REPLIES[case]
    peer = await start_chat_peer(reply, is_endless=is_endless, chunk_chars=5, interval=0.002)
    use_fast_voices(quiet_config)
    settings = load_settings(quiet_config, "cpu")
    rules = settings.rules
    # Two cases also go through the voice (file output); the rest stop at the subtitles, which are what it speaks.
    is_voiced = case in VOICED
    options = Options(persona="yuuri", llm_url=peer.base_url, llm_model="careless-model",
                      output="file" if is_voiced else "none", output_path=tmp_path / "reply.wav", is_realtime=False)
    heard: list[Event] = []
    conversation = Conversation(settings, options)
    conversation.bus.subscribe(lambda e: heard.append(e) if isinstance(e, Subtitle | Audio) else None)
    user_text = f"お話しして（{case}）"
    async with conversation:
        result = await conversation.say(user_text, timeout=120)
        await conversation.pipeline.wait_idle()

    assert result.errors == [], result.errors
    assert not result.is_interrupted and not result.is_dropped
    subtitles = [e for e in heard if isinstance(e, Subtitle)]
    texts = [s.text for s in subtitles]
    spoken = "".join(texts)
    assert texts, "nothing was said"
    for text in texts:
        assert text.strip(), f"an empty sentence was spoken: {texts}"
        assert len(text) <= rules.max_sentence_chars, f"a sentence of {len(text)} characters: {text[:60]}…"
        assert not _problems(text, must_not_say), f"{_problems(text, must_not_say)} in {text!r}"
    assert len(spoken) <= rules.max_reply_chars + rules.max_sentence_chars, f"{len(spoken)} characters spoken"
    for words in must_say:
        assert words in spoken, f"{words!r} was lost from {spoken!r}"
    if is_endless:
        for _ in range(100):  # the peer notices the closed request at its next write
            if peer.disconnects:
                break
            await asyncio.sleep(0.02)
        assert peer.disconnects == 1, "the endless reply was not stopped (the request is still open)"
        assert len(spoken) >= rules.max_reply_chars // 2
    if is_voiced:  # the voice spoke exactly those sentences, each with some sound, in order
        audio = [e for e in heard if isinstance(e, Audio)]
        assert [a.text for a in audio] == texts
        assert all(a.samples.size > 0 for a in audio)
        assert (tmp_path / "reply.wav").stat().st_size > 44
    # Nothing is lost: the user's words and the reply as spoken are in memory.
    with MemoryStore(settings.data_path(settings.assistant.memory.database)) as store:
        turns = [(t.role, t.text) for t in store.turns("yuuri")]
    assert turns[0] == ("user", user_text)
    assert len(turns) == 2 and turns[1][0] == "assistant"
    assert turns[1][1].replace(" ", "") == spoken.replace(" ", "")
    assert not _problems(turns[1][1], must_not_say)


# A small model's habits (the offline default is a 1.5B model): the user's words said back, assistant
# boilerplate, the notes beside the user's words read out. (user's words, reply, must say, must not say)
HABITS: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    "echo-en": ("I'm a bit nervous about my exam tomorrow.",
                "I'm a bit nervous about my exam tomorrow. You have prepared well, you will do fine.",
                ("You have prepared well",), ("nervous about my exam",)),
    "boilerplate-ja": ("こんばんは、今日はちょっと疲れちゃった。",
                       "おつかれさま、今日もよくがんばったね。何かお手伝いできることはありますか？",
                       ("よくがんばったね",), ("お手伝い",)),
    "note-ja": ("明日の面接が不安で、どきどきしてる。",
                "メモ、読み上げないこと。大丈夫、きっとうまくいくよ。",
                ("きっとうまくいく",), ("メモ", "読み上げ")),
}


async def _spoken_reply(config_dir: Path, peer: ChatPeer, user_text: str) -> list[str]:
    """The sentences the reply stage speaks when ``peer`` answers ``user_text`` (no voice, no errors)."""
    settings = load_settings(config_dir, "cpu")
    options = Options(persona="yuuri", llm_url=peer.base_url, llm_model="habitual-model", output="none")
    subtitles: list[Subtitle] = []
    conversation = Conversation(settings, options)
    conversation.bus.subscribe(lambda e: subtitles.append(e) if isinstance(e, Subtitle) else None)
    async with conversation:
        result = await conversation.say(user_text, timeout=120)
    assert result.errors == [], result.errors
    return [s.text for s in subtitles]


@pytest.mark.parametrize("case", sorted(HABITS))
async def test_a_small_models_habits_are_not_spoken(case: str, quiet_config: Path,
                                                    start_chat_peer: Callable[..., Awaitable[ChatPeer]]) -> None:
    user_text, reply, must_say, must_not_say = HABITS[case]
    peer = await start_chat_peer(reply, chunk_chars=5, interval=0.002)
    spoken = "".join(await _spoken_reply(quiet_config, peer, user_text))
    for words in must_say:
        assert words in spoken, f"{words!r} was lost from {spoken!r}"
    for words in must_not_say:
        assert words not in spoken, f"{words!r} was spoken: {spoken!r}"


async def test_a_reply_that_only_echoes_the_user_becomes_a_sign_of_listening(
        quiet_config: Path, start_chat_peer: Callable[..., Awaitable[ChatPeer]]) -> None:
    user_text = "I feel a bit lonely tonight."
    peer = await start_chat_peer(user_text, chunk_chars=5, interval=0.002)
    spoken = await _spoken_reply(quiet_config, peer, user_text)
    assert spoken == load_settings(quiet_config, "cpu").personas["yuuri"].lines["listening"]
