"""The persona prompt, shaped for the engines' prefix caches.

Every request starts with the same bytes: one system message (rules, persona, speaking style, mode; nothing
that changes from turn to turn), then the conversation so far exactly as the model saw it (append-only),
then this turn's context (memory summary, facts, recalled snippets, how the user sounds) beside the user's
words in the final user message. llama.cpp and vLLM then reuse everything up to the new user message.

``PromptHistory`` keeps one persona's conversation in that form; it is bounded by dropping its older half at
once when it outgrows its budget (one cache miss every many turns, not one every turn).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from assistant.config.schema import NEEDS_REASSURANCE, PersonaConfig, RulesConfig
from assistant.llm.engine import ChatMessage
from assistant.llm.guard import ReplyGuard
from assistant.memory.recall import MemoryContext
from assistant.text import guess_language

#: How a canonical emotion is described to the model, per language of the user's words.
EMOTION_WORDS: dict[str, dict[str, str]] = {
    "ja": {
        "happy": "うれしそう・楽しそう",
        "sad": "悲しそう・元気がない",
        "angry": "いらだっている・怒っている",
        "fearful": "不安そう・こわがっている",
        "surprised": "驚いている",
        "disgusted": "いやそう",
        "calm": "落ち着いている",
        "tired": "疲れていそう・元気がない",
        "excited": "声がはずんでいる",
        "neutral": "ふつう",
    },
    "en": {
        "happy": "happy, cheerful",
        "sad": "sad, low",
        "angry": "irritated, angry",
        "fearful": "anxious, scared",
        "surprised": "surprised",
        "disgusted": "put off",
        "calm": "calm",
        "tired": "tired, low on energy",
        "excited": "lively, excited",
        "neutral": "neutral",
    },
}

#: The labels of the context part of a user message, per language of the user's words.
_LABELS: dict[str, dict[str, str]] = {
    "ja": {"open": "（メモ、読み上げないこと：", "close": "）", "summary": "これまでのまとめ",
           "facts": "覚えていること", "snippets": "以前の会話", "mood": "声の様子",
           "mood_line": "{words}ようです"},
    "en": {"open": "(Notes, not to be read out: ", "close": ")", "summary": "Earlier",
           "facts": "You remember", "snippets": "Earlier talk", "mood": "Their voice",
           "mood_line": "sounds {words}"},
}
#: An example exchange in a persona's speaking style: 相手「…」→ NAME「…」 or 相手 "…" → NAME "…".
_EXAMPLE = re.compile(r'^\s*相手\s*(?:「(?P<ja_u>.+?)」|"(?P<en_u>.+?)")\s*→\s*\S+?\s*(?:「(?P<ja_a>.+?)」|"(?P<en_a>.+?)")\s*$')


@dataclass(frozen=True)
class UserMood:
    label: str
    score: float


def system_prompt(rules: RulesConfig, persona: PersonaConfig, mode: str = "normal") -> str:
    """The system message: the same for every turn of a persona in a mode (a prefix the engines cache)."""
    sections: list[str] = ["# ルール", *(f"- {rule}" for rule in rules.rules)]
    sections += ["", f"# あなた（{persona.display_name}）", persona.system_prompt.strip()]
    style = _style_without_examples(persona)
    if style.strip():
        sections += ["", "# 話し方", style.strip()]
    if mode == "bedtime" and rules.bedtime_overlay.strip():
        sections += ["", "# いまのモード", rules.bedtime_overlay.strip()]
    return "\n".join(sections)


def system_message(rules: RulesConfig, persona: PersonaConfig, mode: str = "normal") -> ChatMessage:
    return ChatMessage("system", system_prompt(rules, persona, mode), name=persona.display_name)


def turn_context(rules: RulesConfig, user_text: str, mode: str = "normal", mood: UserMood | None = None,
                 memory: MemoryContext | None = None, shown: str = "") -> list[str]:
    """This turn's context lines, in the user's language; what ``shown`` (the kept conversation) already
    carries is not repeated."""
    language = guess_language(user_text)
    labels = _LABELS[language]
    lines: list[str] = []
    if memory is not None:
        if memory.summary and memory.summary.strip() not in shown:
            lines.append(f"{labels['summary']}: {memory.summary.strip()}")
        facts = [fact for fact in memory.facts if fact not in shown]
        if facts:
            lines.append(f"{labels['facts']}: " + " / ".join(facts))
        snippets = [s for s in memory.snippets if s not in shown and _snippet_text(s) not in shown]
        lines += [f"{labels['snippets']}: {snippet}" for snippet in snippets]
    if mood is not None and mood.label != "neutral":
        words = EMOTION_WORDS[language].get(mood.label, mood.label)
        lines.append(f"{labels['mood']}: " + labels["mood_line"].format(words=words))
        if mode == "bedtime" and mood.label in NEEDS_REASSURANCE and rules.reassurance_first.strip():
            lines.append(" ".join(rules.reassurance_first.split()))
    return lines


#: The notes' labels in every language (a reply may read out the label of another language's notes).
NOTE_LABELS: tuple[str, ...] = tuple(labels["open"].strip("（(：: ") for labels in _LABELS.values())


def unspoken_notes(user_text: str, mood: UserMood | None = None) -> tuple[str, ...]:
    """The phrases of this turn's notes that a reply must never read out: how the user sounds (the labels
    are `NOTE_LABELS`; see `assistant.llm.guard`)."""
    language = guess_language(user_text)
    if mood is None or mood.label == "neutral":
        return ()
    return tuple(EMOTION_WORDS[language].get(mood.label, mood.label).split("・"))


def reply_guard(user_text: str, mood: UserMood | None = None) -> ReplyGuard:
    """The guard of one turn's reply: the user's words, how they sound, the notes' labels."""
    return ReplyGuard(user_text, unspoken_notes(user_text, mood), NOTE_LABELS)


def user_message(user_text: str, context: Sequence[str]) -> str:
    """The final user message: the user's words, then this turn's context (if any) as a short note after them
    (a note before the words makes small models read it out or repeat the words)."""
    text = user_text.strip()
    labels = _LABELS[guess_language(user_text)]
    # No standing "Reply in English." note: the rules say it once, and with the note the 1.5B echoed the user
    # and left more English replies empty (docs/benchmarks.md, "Replies with the guard").
    notes = list(context)
    if not notes:
        return text
    separator = "。" if labels is _LABELS["ja"] else ". "
    body = separator.join(note.rstrip("。. ") for note in notes) + ("" if labels is _LABELS["ja"] else ".")
    return f"{text}\n\n{labels['open']}{body}{labels['close']}"


def example_turns(persona: PersonaConfig) -> list[ChatMessage]:
    """The example exchanges of the persona's speaking style, as chat turns (small models imitate turns far
    better than a description). They follow the system message: part of the cached prefix."""
    turns: list[ChatMessage] = []
    for line in persona.speaking_style.splitlines():
        match = _EXAMPLE.match(line)
        if match:
            turns.append(ChatMessage("user", match["ja_u"] or match["en_u"]))
            turns.append(ChatMessage("assistant", match["ja_a"] or match["en_a"]))
    return turns


def _style_without_examples(persona: PersonaConfig) -> str:
    lines = [line for line in persona.speaking_style.strip().splitlines() if not _EXAMPLE.match(line)]
    return "\n".join(line for line in lines if line.strip() not in ("話し方の例：", "話し方の例:"))


def build_messages(rules: RulesConfig, persona: PersonaConfig, user_text: str, mode: str = "normal",
                   mood: UserMood | None = None, memory: MemoryContext | None = None,
                   history: Sequence[ChatMessage] | Sequence[tuple[str, str]] = ()) -> list[ChatMessage]:
    """System message, the conversation so far, then the user message with this turn's context.

    ``history`` is the kept conversation (as the model saw it); without one, memory's recent turns stand in
    (after a restart or for a persona not heard from in this process).
    """
    past = _as_messages(history) or _as_messages(memory.recent if memory is not None else ())
    shown = "\n".join(m.content for m in past)
    context = turn_context(rules, user_text, mode, mood, memory, shown)
    return [*prefix_messages(rules, persona, mode), *past, ChatMessage("user", user_message(user_text, context))]


def prefix_messages(rules: RulesConfig, persona: PersonaConfig, mode: str = "normal") -> list[ChatMessage]:
    """What every request of ``persona`` in ``mode`` starts with: the system message and the example turns."""
    return [system_message(rules, persona, mode), *example_turns(persona)]


def _as_messages(turns: Iterable[ChatMessage] | Iterable[tuple[str, str]]) -> list[ChatMessage]:
    messages: list[ChatMessage] = []
    for turn in turns:
        role, text = (turn.role, turn.content) if isinstance(turn, ChatMessage) else turn
        if role in ("user", "assistant") and text.strip():
            messages.append(ChatMessage(role, text))  # type: ignore[arg-type]
    return messages


def _snippet_text(snippet: str) -> str:
    """``[2026-11-20] user: text`` -> ``text`` (to see whether the kept conversation already holds it)."""
    _, _, rest = snippet.partition(": ")
    return rest.strip("…") or snippet


@dataclass
class _Entry:
    turn_id: int
    message: ChatMessage


@dataclass
class PromptHistory:
    """One persona's conversation as the model saw it: user messages with the context sent beside them,
    replies as generated (or the heard part of a cut one). Append-only until it outgrows ``budget_chars``;
    then its older half goes at once."""

    budget_chars: int = 2400
    entries: list[_Entry] = field(default_factory=list)

    @classmethod
    def from_turns(cls, turns: Iterable[tuple[str, str]], budget_chars: int = 2400) -> PromptHistory:
        history = cls(budget_chars)
        for message in _as_messages(turns):
            history.entries.append(_Entry(0, message))
        history._trim()
        return history

    @property
    def messages(self) -> list[ChatMessage]:
        return [entry.message for entry in self.entries]

    @property
    def chars(self) -> int:
        return sum(len(entry.message.content) for entry in self.entries)

    def add_user(self, turn_id: int, content: str) -> None:
        self.entries.append(_Entry(turn_id, ChatMessage("user", content)))

    def set_reply(self, turn_id: int, content: str) -> None:
        """The reply to ``turn_id`` (replacing an earlier version, e.g. the generated text of a reply that was
        then cut); an empty reply removes it. Trims the history when it has grown past its budget."""
        content = content.strip()
        for index, entry in enumerate(self.entries):
            if entry.turn_id == turn_id and entry.message.role == "assistant":
                if content:
                    self.entries[index] = _Entry(turn_id, ChatMessage("assistant", content))
                else:
                    del self.entries[index]
                return
        if content:
            position = len(self.entries)
            for index, entry in enumerate(self.entries):  # right after its user message
                if entry.turn_id == turn_id and entry.message.role == "user":
                    position = index + 1
            self.entries.insert(position, _Entry(turn_id, ChatMessage("assistant", content)))
        self._trim()

    def _trim(self) -> None:
        """Past the budget: drop the older half (by characters), starting the rest at a user message."""
        if self.chars <= self.budget_chars:
            return
        half, dropped, cut = self.chars / 2, 0, 0
        while cut < len(self.entries) and dropped < half:
            dropped += len(self.entries[cut].message.content)
            cut += 1
        while cut < len(self.entries) and self.entries[cut].message.role != "user":
            cut += 1
        del self.entries[:cut]
