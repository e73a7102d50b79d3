"""The persona prompt: rules + persona + mode overlay + memory + how the user sounds, as chat messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from assistant.config.schema import PersonaConfig, RulesConfig
from assistant.llm.engine import ChatMessage
from assistant.memory.recall import MemoryContext

#: How a canonical emotion is described to the model (Japanese first; the model answers in the user's language).
EMOTION_WORDS: dict[str, str] = {
    "happy": "うれしそう・楽しそう",
    "sad": "悲しそう・元気がない",
    "angry": "いらだっている・怒っている",
    "fearful": "不安そう・こわがっている",
    "surprised": "驚いている",
    "disgusted": "いやそう",
    "calm": "落ち着いている",
    "neutral": "ふつう",
}
NEEDS_REASSURANCE = frozenset({"sad", "fearful"})


@dataclass(frozen=True)
class UserMood:
    label: str
    score: float


def system_prompt(rules: RulesConfig, persona: PersonaConfig, mode: str = "normal", mood: UserMood | None = None,
                  memory: MemoryContext | None = None) -> str:
    """The system message for one turn, in the order the model should weigh it."""
    sections: list[str] = ["# ルール", *(f"- {rule}" for rule in rules.rules)]
    sections += ["", f"# あなた（{persona.display_name}）", persona.system_prompt.strip()]
    if persona.speaking_style.strip():
        sections += ["", "# 話し方", persona.speaking_style.strip()]
    if mode == "bedtime" and rules.bedtime_overlay.strip():
        sections += ["", "# いまのモード", rules.bedtime_overlay.strip()]
    if memory is not None:
        if memory.summary:
            sections += ["", "# これまでの会話のまとめ", memory.summary.strip()]
        if memory.facts:
            sections += ["", "# 相手について覚えていること", *(f"- {fact}" for fact in memory.facts)]
        if memory.snippets:
            sections += ["", "# 関係がありそうな過去の会話", *(f"- {snippet}" for snippet in memory.snippets)]
    if mood is not None and mood.label != "neutral":
        words = EMOTION_WORDS.get(mood.label, mood.label)
        sections += ["", "# 相手の声の様子", f"声の調子から、相手は{words}ように聞こえます（{mood.label}, {mood.score:.2f}）。"]
        if mode == "bedtime" and mood.label in NEEDS_REASSURANCE and rules.reassurance_first.strip():
            sections.append(rules.reassurance_first.strip())
    return "\n".join(sections)


def build_messages(rules: RulesConfig, persona: PersonaConfig, user_text: str, mode: str = "normal",
                   mood: UserMood | None = None, memory: MemoryContext | None = None,
                   history: Sequence[tuple[str, str]] = ()) -> list[ChatMessage]:
    """System prompt, then recent turns (from memory, else ``history``), then what the user just said."""
    messages = [ChatMessage("system", system_prompt(rules, persona, mode, mood, memory), name=persona.display_name)]
    recent = memory.recent if memory is not None and memory.recent else list(history)
    for role, text in recent:
        if role in ("user", "assistant") and text.strip():
            messages.append(ChatMessage(role, text))  # type: ignore[arg-type]
    messages.append(ChatMessage("user", user_text))
    return messages
