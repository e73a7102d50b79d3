"""The reply guard: boilerplate, the user's words said back and the notes read out are not spoken; a
greeting answering a greeting, a fact restated and an empathetic paraphrase are."""

from __future__ import annotations

import pytest

from assistant.llm.prompt import UserMood, reply_guard

TIRED = "こんばんは、今日はちょっと疲れちゃった。"
NERVOUS = "I'm a bit nervous about my exam tomorrow."


@pytest.mark.parametrize(("user", "mood", "chunk", "problem"), [
    (TIRED, "happy", "うれしそうで、", "note"),
    (TIRED, None, "何かお手伝いできることはありますか？", "boilerplate"),
    (TIRED, None, "明後日はいつから起きるかお手伝いできますか？", "boilerplate"),
    (TIRED, None, "お母さんのお手伝いをしたんだね。", None),
    (NERVOUS, None, "Is there anything I can help you with?", "boilerplate"),
    (NERVOUS, None, "As an AI language model, I don't get nervous.", "boilerplate"),
    (NERVOUS, None, "I'm a bit nervous about my exam", "echo"),
    (TIRED, None, "メモ、読み上げないこと。", "note"),
    ("Hello? How are you today?", "happy", "(Notes, not to be read out: He seems happy and cheerful.)", "note"),
    ("Hello? How are you today?", None, "（メモ、読み上げないこと：元気そう）", "note"),
    ("Hello? How are you today?", "happy", "You sound happy today!", None),
    (TIRED, None, "こんばんは！", None),
    (TIRED, None, "今日は少し疲れちゃったんだね。", None),
    (TIRED, "happy", "お疲れさま、ゆっくり休んでね。", None),
    (NERVOUS, "fearful", "It's okay to feel nervous.", None),
    (NERVOUS, None, "You will do great tomorrow!", None),
    (NERVOUS, None, "tomorrow.", None),
    ("I'm going to sleep now. Good night.", None, "Goodnight.", None),
    ("I feel a bit lonely tonight.", None, "I feel a bit lonely tonight.", "echo"),
    ("うちの猫の名前、覚えてる？", None, "猫の名前はミケだよね。", None),
])
def test_what_is_not_spoken(user: str, mood: str | None, chunk: str, problem: str | None) -> None:
    guard = reply_guard(user, UserMood(mood, 0.9) if mood else None)
    assert guard.problem(chunk) == problem
