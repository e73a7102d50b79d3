"""Recall for the prompt: Japanese paraphrases find old facts, and the memory part never outgrows its budget."""

from __future__ import annotations

import time

import pytest

from assistant.config.schema import MemoryConfig
from assistant.memory.conversation import PersonaMemory
from assistant.memory.recall import (
    MemoryContext,
    fit_to_budget,
    informative_terms,
    query_terms,
    recall_for_prompt,
)
from assistant.memory.store import MemoryStore
from tests.fixtures.memory import CHATTER, add_chatter


def test_query_terms_are_character_trigrams_within_runs() -> None:
    assert query_terms("私の名前、覚えてる？") == ["私の名", "の名前", "覚えて", "えてる"]
    assert query_terms("My NAME!") == ["nam", "ame"]
    assert query_terms("はい") == []


def test_a_fact_from_fifty_turns_ago_is_found_from_a_paraphrase(memory_store: MemoryStore) -> None:
    stated = memory_store.add_turn("miyu", "user", "私の名前はさくらです")
    memory_store.add_turn("miyu", "assistant", "さくらちゃんっていうんだね、よろしく！")
    memory_store.add_turn("miyu", "user", "うちの猫の名前はタマっていうの")  # shares 「の名前」 only
    add_chatter(memory_store, "miyu", 50)
    add_chatter(memory_store, "yuuri", 10)

    context = recall_for_prompt(memory_store, "miyu", "私の名前、覚えてる？", budget_chars=4000, recent_turns=8,
                                recall_limit=1)

    assert len(context.snippets) == 1
    assert context.snippets[0].endswith("user: 私の名前はさくらです")
    assert all("さくら" not in text for _role, text in context.recent)
    # The same through the memory the conversation uses, with the fact extracted when it was said.
    memory = PersonaMemory(memory_store, MemoryConfig(recall_limit=3))
    view = memory.view("miyu", "私の名前、覚えてる？")
    assert any(snippet.endswith("私の名前はさくらです") for snippet in view.snippets)
    assert memory_store.get_turn(stated) is not None


def test_facts_said_long_ago_reach_the_prompt(memory_store: MemoryStore) -> None:
    memory = PersonaMemory(memory_store, MemoryConfig())
    memory.record("miyu", "user", "私の名前はさくらです。猫が大好き！", turn_id=1, emotion="happy", emotion_score=0.9)
    memory.record("miyu", "assistant", "よろしくね、さくらちゃん", turn_id=1)
    add_chatter(memory_store, "miyu", 50)
    view = memory.view("miyu", "私の名前、覚えてる？")
    assert "the user's name: さくら" in view.facts
    assert "the user likes: 猫" in view.facts
    assert view.chars <= MemoryConfig().prompt_budget_chars


def test_english_recall(memory_store: MemoryStore) -> None:
    memory_store.add_turn("yuuri", "user", "I moved to Osaka last spring for my new job.")
    for index in range(40):
        memory_store.add_turn("yuuri", "user" if index % 2 == 0 else "assistant", f"Small talk number {index} about the weather.")
    context = recall_for_prompt(memory_store, "yuuri", "Do you remember where I moved to?", 4000, 6, 2)
    assert any("Osaka" in snippet for snippet in context.snippets)


def test_trigrams_in_many_turns_recall_nothing(memory_store: MemoryStore) -> None:
    for index in range(60):
        memory_store.add_turn("miyu", "user", f"そうですね、{index}番目のことですね")
    memory_store.add_turn("miyu", "user", "私の名前はさくらです")
    assert informative_terms(memory_store, ["ですね", "さくら"]) == ["さくら"]
    context = recall_for_prompt(memory_store, "miyu", "そうですね", 4000, 2, 3)
    assert context.snippets == []


def test_recent_turns_are_not_recalled_again(memory_store: MemoryStore) -> None:
    add_chatter(memory_store, "miyu", 20)
    memory_store.add_turn("miyu", "user", "私の名前はさくらです")
    memory_store.add_turn("miyu", "assistant", "さくらちゃん、よろしくね")
    context = recall_for_prompt(memory_store, "miyu", "私の名前、覚えてる？", 4000, recent_turns=4, recall_limit=3)
    assert ("user", "私の名前はさくらです") in context.recent
    assert not any("私の名前はさくらです" in snippet for snippet in context.snippets)


def test_the_current_turn_is_neither_recent_nor_recalled(memory_store: MemoryStore) -> None:
    add_chatter(memory_store, "miyu", 10)
    memory_store.add_turn("miyu", "user", "北海道の話をしたよね")
    add_chatter(memory_store, "miyu", 10)
    current = memory_store.add_turn("miyu", "user", "北海道の話、覚えてる？")
    for kwargs in ({"current_turn": current}, {}):
        context = recall_for_prompt(memory_store, "miyu", "北海道の話、覚えてる？", 4000, 4, 3, **kwargs)
        assert all(text != "北海道の話、覚えてる？" for _role, text in context.recent)
        assert not any(snippet.endswith("北海道の話、覚えてる？") for snippet in context.snippets)
        assert any(snippet.endswith("北海道の話をしたよね") for snippet in context.snippets)
        assert len(context.recent) == 4


@pytest.mark.parametrize("budget", [0, 1, 40, 200, 500, 1000, 4000, 12000])
def test_the_budget_holds_with_a_long_history(memory_store: MemoryStore, budget: int) -> None:
    start = time.time() - 400 * 60
    for index in range(400):
        text = f"{index}番目の長い話：" + CHATTER[index % len(CHATTER)] * (1 + index % 10)
        memory_store.add_turn("miyu", "user" if index % 2 == 0 else "assistant", text, created_at=start + index * 60)
    for index in range(30):
        memory_store.add_fact("miyu", "like", f"好きなもの{index}番：" + "あ" * index)
    memory_store.save_summary("miyu", 300, "要約：" + "さくらさんは北海道と猫の話をよくする。" * 60)

    context = recall_for_prompt(memory_store, "miyu", "北海道のラーメンの話をもう一度して", budget, recent_turns=30,
                                recall_limit=5)

    assert context.chars <= budget
    last = memory_store.recent("miyu", 1)[0].text
    if budget >= len(last):
        # The newest turn is the last thing to go, and whole while it fits.
        assert context.recent[-1][1] == last
    if budget >= 4000:
        assert context.summary and context.facts and context.snippets and len(context.recent) >= 2


def test_trimming_order() -> None:
    def build() -> MemoryContext:
        return MemoryContext(summary="S" * 100, facts=[f"fact{i}" for i in range(5)],
                             snippets=["best" * 10, "middle" * 10, "worst" * 10],
                             recent=[("user", "old" * 10), ("assistant", "older reply" * 3), ("user", "last question")])

    full = build()
    # First the lowest-ranked snippets and the oldest recent turns go, from whichever holds more.
    trimmed = fit_to_budget(build(), full.chars - 1)
    assert trimmed.snippets == full.snippets[:2] and trimmed.recent == full.recent
    trimmed = fit_to_budget(build(), full.chars - 51)
    assert trimmed.snippets == full.snippets[:1] and trimmed.recent == full.recent
    trimmed = fit_to_budget(build(), full.chars - 111)
    assert trimmed.snippets == [] and trimmed.recent == full.recent
    trimmed = fit_to_budget(build(), full.chars - 151)
    assert trimmed.snippets == [] and trimmed.recent == full.recent[1:]
    assert trimmed.facts == full.facts and trimmed.summary == full.summary
    # With room only for the essentials: the last two turns, three facts, the summary shortened.
    essentials = 5 * 3 + len("older reply" * 3) + len("last question")
    trimmed = fit_to_budget(build(), essentials + 90)
    assert trimmed.snippets == [] and len(trimmed.recent) == 2 and trimmed.facts == full.facts[:3]
    assert trimmed.summary is not None and trimmed.summary.endswith("…") and trimmed.chars <= essentials + 90
    # Tiny budgets keep the end of the last turn.
    trimmed = fit_to_budget(build(), 6)
    assert trimmed.recent == [("user", "…stion")] and trimmed.chars == 6
    assert fit_to_budget(build(), 0).is_empty
