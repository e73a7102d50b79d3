"""Facts found in what the user says, without the LLM: names, what to be called, likes, dislikes, plans."""

from __future__ import annotations

from datetime import datetime

import pytest

from assistant.memory.facts import ExtractedFact, extract_facts, format_fact, remember_facts
from assistant.memory.store import MemoryStore

SAID_ON = datetime(2026, 11, 22, 21, 30)


@pytest.mark.parametrize(("text", "expected"), [
    ("私の名前はさくらです", [("name", "さくら")]),
    ("僕の名前は健太だよ！", [("name", "健太")]),
    ("わたしは田中と申します。", [("name", "田中")]),
    ("さくって呼んでね", [("call_me", "さく")]),
    ("私のことはさくちゃんと呼んでください", [("call_me", "さくちゃん")]),
    ("猫が大好き！", [("like", "猫")]),
    ("好きなのはラーメンです", [("like", "ラーメン")]),
    ("好きな食べ物はカレーだよ", [("like", "食べ物: カレー")]),
    ("ピーマンが苦手なんだ", [("dislike", "ピーマン")]),
    ("にんじんが好きじゃない", [("dislike", "にんじん")]),
    ("明日は友達と映画を見に行くんだ", [("plan", "2026-11-23 (明日): 友達と映画を見に行くんだ")]),
    ("明後日、歯医者に行きます", [("plan", "2026-11-24 (明後日): 歯医者に行きます")]),
    ("週末は家でゆっくりする", [("plan", "週末 (said 2026-11-22): 家でゆっくりする")]),
    ("My name is Sakura.", [("name", "Sakura")]),
    ("Call me Saku please", [("call_me", "Saku")]),
    ("my name is sakura and I like cats", [("name", "sakura"), ("like", "cats")]),
    ("I really like hiking in the mountains", [("like", "hiking in the mountains")]),
    ("I don't like mushrooms", [("dislike", "mushrooms")]),
    ("Tomorrow I'm going to visit my grandmother.",
     [("plan", "2026-11-23 (tomorrow): Tomorrow I'm going to visit my grandmother")]),
])
def test_stated_facts_are_found(text: str, expected: list[tuple[str, str]]) -> None:
    assert [(fact.kind, fact.text) for fact in extract_facts(text, SAID_ON)] == expected


@pytest.mark.parametrize("text", [
    "私の名前、覚えてる？", "私の名前は何ですか", "私の名前はさくらですか？", "なんて呼べばいい？",
    "あなたが好き", "明日は雨だったね", "昨日は楽しかった", "猫は好き？",
    "What's my name?", "I love you", "I'd like to sleep", "Do I like it?",
])
def test_questions_and_non_facts_are_not_facts(text: str) -> None:
    assert extract_facts(text, SAID_ON) == []


def test_facts_are_stored_and_a_new_name_replaces_the_old(memory_store: MemoryStore) -> None:
    turn = memory_store.add_turn("miyu", "user", "私の名前はさくらです。猫が好き。")
    remember_facts(memory_store, "miyu", "私の名前はさくらです。猫が好き。", source_turn=turn, now=SAID_ON)
    remember_facts(memory_store, "miyu", "やっぱり名前はゆきです", now=SAID_ON)  # not 私の: no name
    remember_facts(memory_store, "miyu", "実は私の名前はゆきです", now=SAID_ON)
    facts = {(fact.kind, fact.text) for fact in memory_store.facts("miyu")}
    assert facts == {("name", "ゆき"), ("like", "猫")}
    like = next(fact for fact in memory_store.facts("miyu") if fact.kind == "like")
    assert like.source_turn == turn and like.created_at == SAID_ON.timestamp()


def test_fact_lines_for_the_prompt() -> None:
    assert format_fact(ExtractedFact("name", "さくら")) == "the user's name: さくら"
    assert format_fact(ExtractedFact("plan", "2026-11-23 (明日): 映画")) == "the user's plan: 2026-11-23 (明日): 映画"
