"""Has the user finished? Finished and unfinished words in Japanese and English; merging; joining parts."""

from __future__ import annotations

import pytest

from assistant.conversation.endpointing import judge_completion, merges_with_previous
from assistant.text import join_parts


@pytest.mark.parametrize("text", [
    "こんばんは、今日はちょっと疲れちゃった。", "いい天気ですね", "どうしたの？", "ありがとうございます。", "こんばんは",
    "明日は晴れるかな", "Hi! Could you tell me something nice about today?", "I went to the market this morning.",
])
def test_finished_words_are_complete(text: str) -> None:
    assert judge_completion(text) == "complete"


@pytest.mark.parametrize("text", [
    "今日は仕事で疲れちゃって", "今日は疲れちゃって。", "仕事が終わったんだけど", "雨が降ってるから、", "それで",
    "And I bought", "I think that", "so tired", "Well, I was wondering,", "I was going to…",
])
def test_unfinished_words_are_unfinished(text: str) -> None:
    assert judge_completion(text) == "unfinished"


def test_nothing_is_unclear() -> None:
    assert judge_completion("") == judge_completion("  」") == "unclear"


def test_a_short_pause_or_unfinished_words_merge_and_a_long_pause_after_a_question_does_not() -> None:
    assert merges_with_previous(0.6, "I went to the market this morning.", 1.5)
    assert merges_with_previous(0.6, None, 1.5)  # the words are not known yet: the pause decides
    assert merges_with_previous(2.6, "今日は仕事で疲れちゃって", 1.5)
    assert not merges_with_previous(2.6, "今日は何曜日？", 1.5)
    assert not merges_with_previous(2.6, None, 1.5)


def test_parts_join_without_spaces_in_japanese_and_with_spaces_elsewhere() -> None:
    assert join_parts(["こんばんは。", "今日は疲れた。"]) == "こんばんは。今日は疲れた。"
    assert join_parts(["Hello.", " How are you?"]) == "Hello. How are you?"
    assert join_parts(["今日は", "Tokyo"]) == "今日は Tokyo"
    assert join_parts(["", "うん"]) == "うん"
