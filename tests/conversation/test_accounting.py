"""Turn accounting: lines numbered in order, TurnDone only once every sentence is accounted for and holding only
what was heard (a cut sentence up to its played part), and memory given the user's new words and the heard reply."""

from __future__ import annotations

import asyncio

from assistant.config.loader import Settings
from assistant.conversation.accounting import CUT_REPORT_WAIT_S, TurnLedger, joined
from assistant.events import PlaybackFinished, PlaybackStarted, ReplyDone, TurnDone, UserTurnReady
from assistant.memory.conversation import PersonaMemory
from assistant.memory.store import MemoryStore


def finished(turn_id: int, index: int, played_s: float, duration_s: float = 2.0) -> PlaybackFinished:
    return PlaybackFinished(turn_id=turn_id, sentence_index=index, played_s=played_s, duration_s=duration_s)


def test_lines_are_numbered_in_order_and_spoken_in_the_right_language(settings: Settings) -> None:
    miyu = settings.personas["miyu"]
    ledger = TurnLedger()
    turn = UserTurnReady(turn_id=4, text="hello there", language="en")
    ledger.open(4, "miyu")
    scripted = ledger.line(turn, miyu, "ちょっと待ってね！", is_scripted=True)
    generated = ledger.line(turn, miyu, "Hello!")  # a model's sentence without its own language: the user's
    tagged = ledger.line(turn, miyu, "こんにちは。", language="ja")
    assert [s.sentence_index for s in (scripted, generated, tagged)] == [0, 1, 2]
    assert [s.language for s in (scripted, generated, tagged)] == [miyu.language, "en", "ja"]
    assert scripted.is_scripted and not generated.is_scripted
    assert all(s.turn_id == 4 and s.persona == "miyu" for s in (scripted, generated, tagged))
    account = ledger.account(4)
    assert account is not None and account.has_scripted and account.sentences == ["ちょっと待ってね！", "Hello!", "こんにちは。"]


def test_a_text_reply_is_heard_whole_as_soon_as_it_is_written(settings: Settings) -> None:
    ledger = TurnLedger(is_voiced=False)
    turn = UserTurnReady(turn_id=1, text="hi", language="en")
    ledger.open(1, "miyu")
    for text in ("Hello.", "How are you?"):
        ledger.line(turn, settings.personas["miyu"], text)
    written, done = ledger.finish(1)
    assert written == ReplyDone(turn_id=1, persona="miyu", text="Hello. How are you?", sentence_count=2)
    assert done == TurnDone(turn_id=1, persona="miyu", spoken_text="Hello. How are you?")
    assert ledger.account(1) is None and ledger.in_flight == []


def test_a_voiced_reply_is_done_when_its_last_sentence_has_played(settings: Settings) -> None:
    ledger = TurnLedger(is_voiced=True)
    turn = UserTurnReady(turn_id=2, text="こんにちは")
    ledger.open(2, "miyu")
    for text in ("やっほー！", "今日は何する？"):
        ledger.line(turn, settings.personas["miyu"], text)
    ledger.started(PlaybackStarted(turn_id=2, sentence_index=0))
    assert ledger.played(finished(2, 0, 2.0)) is None  # not written to the end yet
    _, done = ledger.finish(2)
    assert done is None  # the second sentence has not played
    ledger.started(PlaybackStarted(turn_id=2, sentence_index=1))
    assert ledger.played(finished(2, 1, 2.0)) == TurnDone(turn_id=2, persona="miyu", spoken_text="やっほー！今日は何する？")
    assert ledger.played(finished(2, 1, 2.0)) is None  # a report after the end belongs to no reply


async def test_a_cut_reply_is_heard_up_to_the_played_part_of_its_cut_sentence(settings: Settings) -> None:
    ledger = TurnLedger(is_voiced=True)
    turn = UserTurnReady(turn_id=3, text="話して")
    ledger.open(3, "miyu")
    for text in ("むかしむかし、", "あるところに猫がいました。", "おしまい。"):
        ledger.line(turn, settings.personas["miyu"], text)
    ledger.finish(3)
    for index in (0, 1):
        ledger.started(PlaybackStarted(turn_id=3, sentence_index=index))
    ledger.played(finished(3, 0, 2.0))
    cut = asyncio.create_task(ledger.cut(3))  # Interrupted: the output's report of the cut sentence is awaited
    await asyncio.sleep(0.05)
    assert not cut.done()
    assert ledger.played(finished(3, 1, 1.0), is_cancelled=True) is None  # half of it was heard
    done = await asyncio.wait_for(cut, CUT_REPORT_WAIT_S)
    assert done == TurnDone(turn_id=3, persona="miyu", spoken_text="むかしむかし、あるところに…", is_interrupted=True)
    assert ledger.account(3) is None


async def test_a_cut_whose_report_never_comes_is_settled_after_a_short_wait(settings: Settings) -> None:
    ledger = TurnLedger(is_voiced=True)
    ledger.open(5, "miyu")
    ledger.line(UserTurnReady(turn_id=5, text="x"), settings.personas["miyu"], "はい。")
    ledger.started(PlaybackStarted(turn_id=5, sentence_index=0))
    loop = asyncio.get_running_loop()
    began = loop.time()
    done = await ledger.cut(5)
    assert loop.time() - began >= CUT_REPORT_WAIT_S * 0.9
    assert done is not None and done.spoken_text == "" and done.is_interrupted


async def test_memory_gets_a_continued_turns_new_words_once_and_only_the_heard_reply(
        settings: Settings, memory_store: MemoryStore) -> None:
    memory = PersonaMemory(memory_store, settings.assistant.memory)
    ledger = TurnLedger(memory, is_voiced=True)
    first = UserTurnReady(turn_id=1, text="明日は雨かな", parts=("明日は雨かな",))
    await ledger.remember_user(first, "miyu")
    # The user went on before the reply was heard: one turn, whose first words are stored already.
    merged = UserTurnReady(turn_id=2, text="明日は雨かな 傘いるかな", merged_from=1, parts=("明日は雨かな", "傘いるかな"),
                           emotion="sad", emotion_score=0.8)
    await ledger.remember_user(merged, "miyu")
    await ledger.remember(TurnDone(turn_id=2, persona="miyu", spoken_text="傘があると安心…", is_interrupted=True))
    await ledger.remember(TurnDone(turn_id=6, persona="miyu", spoken_text=""))  # nothing heard: nothing stored
    turns = memory_store.turns("miyu")
    assert [(t.role, t.text, t.turn_id) for t in turns] == [
        ("user", "明日は雨かな", 1), ("user", "傘いるかな", 2), ("assistant", "傘があると安心…", 2)]
    assert turns[1].emotion == "sad" and turns[2].is_interrupted


def test_sentences_join_with_a_space_after_english_only() -> None:
    assert joined(["Hello.", "How are you?"]) == "Hello. How are you?"
    assert joined(["こんにちは。", "元気？"]) == "こんにちは。元気？"
    assert joined(["OK.", "じゃあね。"]) == "OK. じゃあね。"
