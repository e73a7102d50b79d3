"""Facts the user states plainly (name, what to be called, likes, dislikes, plans), found without the LLM.

Only the obvious Japanese and English patterns are recognised; questions (「私の名前、覚えてる？」,
"what's my name?") and negations (「好きじゃない」) are not facts. Rolling summaries catch the rest.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from assistant.memory.store import Fact, MemoryStore

#: How a fact of each kind reads in the prompt.
FACT_LABELS: dict[str, str] = {
    "name": "the user's name",
    "call_me": "call the user",
    "like": "the user likes",
    "dislike": "the user dislikes",
    "plan": "the user's plan",
}
#: Kinds with one value at a time: a new one replaces the old.
SINGLE_VALUED: frozenset[str] = frozenset({"name", "call_me"})


@dataclass(frozen=True, slots=True)
class ExtractedFact:
    """A fact found in what the user said."""

    kind: str
    text: str

    @property
    def replaces(self) -> bool:
        return self.kind in SINGLE_VALUED


_SENTENCE_END = re.compile(r"(?<=[。!?\n])|(?<=\.)\s")
_ME_JA = r"(?:私|わたし|わたくし|僕|ぼく|俺|おれ|あたし|うち|自分)"
_TOKEN_JA = r"[^\s、。,.!?「」『』()]"
_NAME_JA = (
    re.compile(rf"{_ME_JA}の名前は(?P<v>{_TOKEN_JA}{{1,20}}?)(?:です|だよ|だ|と申します|といいます|と言います|って言います|っていいます|$)"),
    re.compile(rf"^名前は(?P<v>{_TOKEN_JA}{{1,20}}?)(?:です|だよ|だ|$)"),
    re.compile(rf"{_ME_JA}は(?P<v>{_TOKEN_JA}{{1,20}}?)(?:と申します|といいます|と言います|って言います|っていいます)"),
)
_CALL_ME_JA = re.compile(
    rf"(?:{_ME_JA}のことは|これからは|今日からは?)?(?P<v>{_TOKEN_JA}{{1,20}}?)(?:って|と)呼んで")
_LIKE_JA = (
    re.compile(rf"好きなのは(?P<v>{_TOKEN_JA}{{1,30}}?)(?:です|だよ|だね|かな|なんだ|$)"),
    re.compile(rf"好きな(?P<what>{_TOKEN_JA}{{1,10}}?)は(?P<v>{_TOKEN_JA}{{1,30}}?)(?:です|だよ|だね|かな|なんだ|$)"),
    re.compile(r"(?P<v>[^\s、。,.!?はがもを]{1,20})が(?:大|だい)?好き(?!じゃ|では|ではない|くない|になれない)"),
)
_DISLIKE_JA = (
    re.compile(r"(?P<v>[^\s、。,.!?はがもを]{1,20})が(?:大|だい)?(?:嫌い|きらい|苦手|にがて)"),
    re.compile(r"(?P<v>[^\s、。,.!?はがもを]{1,20})が好きじゃない"),
)
_WHEN_JA: dict[str, int | None] = {
    "明後日": 2, "あさって": 2, "明日": 1, "あした": 1, "今日": 0, "きょう": 0, "今夜": 0, "今晩": 0,
    "来週": None, "週末": None, "今度": None,
}
_PLAN_JA = re.compile(
    r"(?P<when>" + "|".join(_WHEN_JA) + r")(?:の(?:朝|昼|夜|午前|午後))?(?:は|も)?、?(?P<v>[^。!?]{2,40})$")
_PLAN_JA_TAIL = re.compile(r"(?:んだ|んです|のです|んだよ|なんだ|の|よ|ね|な|から|ので|つもり|予定)+$")
_PLAN_JA_VERB = re.compile(r"(?:[うくすつぬぶむるぐ]|ます|しよう|行こう|予定|つもり|休み|用事)$")
_NOT_A_VALUE_JA = frozenset({"あなた", "君", "きみ", "お前", "おまえ", "それ", "これ", "あれ", "何", "なに", "なん"})

_NAME_EN = (
    re.compile(r"(?i:\bmy name is|\bmy name's|\bi am called|\bi'm called)\s+(?P<v>[A-Za-z][\w'\-]*(?:\s+[A-Z][\w'\-]*){0,2})"),
    re.compile(r"(?i:\bcall me)\s+(?P<v>[A-Za-z][\w'\-]*(?:\s+[A-Z][\w'\-]*){0,1})"),
)
_LIKE_EN = re.compile(r"(?i:\bI\s+(?:really\s+|also\s+|do\s+)?(?:like|love|enjoy|adore))\s+(?P<v>[^.,;!?]{2,40})")
_DISLIKE_EN = re.compile(
    r"(?i:\bI\s+(?:really\s+)?(?:don't|do not|dont)\s+(?:like|enjoy)|\bI\s+(?:hate|dislike|can't stand))\s+"
    r"(?P<v>[^.,;!?]{2,40})")
_WHEN_EN: dict[str, int | None] = {
    "the day after tomorrow": 2, "tomorrow": 1, "today": 0, "tonight": 0, "this evening": 0,
    "next week": None, "this weekend": None, "on the weekend": None,
}
_PLAN_EN_WHEN = re.compile(r"(?i)\b(?P<when>" + "|".join(_WHEN_EN) + r")\b")
_PLAN_EN_INTENT = re.compile(
    r"(?i)\b(?:i'm going to|i am going to|i'm gonna|i will|i'll|i have to|i've got to|i need to|i plan to|"
    r"i'm planning to|we're going to|we will|we'll|i'm \w+ing|i am \w+ing|i have an?)\b")
_NOT_A_VALUE_EN = frozenset({"it", "that", "this", "you", "them", "him", "her", "what", "not", "so", "too",
                             "a", "an", "the", "to", "me", "myself", "sure"})


def extract_facts(text: str, now: datetime | None = None) -> list[ExtractedFact]:
    """The facts stated in ``text`` (in order, without duplicates); ``now`` dates plans like 「明日」."""
    clock = now or datetime.now()
    found: list[ExtractedFact] = []
    for sentence in _sentences(text):
        if _is_question(sentence):
            continue
        found.extend(_japanese_facts(sentence, clock))
        found.extend(_english_facts(sentence, clock))
    return list(dict.fromkeys(found))


def remember_facts(store: MemoryStore, persona: str, text: str, source_turn: int | None = None,
                   now: datetime | None = None) -> list[int]:
    """Extract the facts in ``text`` and store them for ``persona``; returns their ids."""
    return [store.add_fact(persona, fact.kind, fact.text, source_turn, replace_kind=fact.replaces,
                           created_at=now.timestamp() if now else None)
            for fact in extract_facts(text, now)]


def format_fact(fact: Fact | ExtractedFact) -> str:
    """A fact as one line for the prompt, e.g. ``the user's name: さくら``."""
    return f"{FACT_LABELS.get(fact.kind, fact.kind)}: {fact.text}"


def _sentences(text: str) -> list[str]:
    normalized = unicodedata.normalize("NFKC", text)
    return [part.strip() for part in _SENTENCE_END.split(normalized) if part and part.strip()]


def _is_question(sentence: str) -> bool:
    stripped = sentence.rstrip(" 。.!")
    return stripped.endswith(("?", "か", "かな", "っけ", "の?")) or "?" in stripped


def _clean_ja(value: str) -> str | None:
    value = value.strip(" 、,")
    if not value or value in _NOT_A_VALUE_JA or any(word in value for word in ("何", "なに", "なん")):
        return None
    return value


def _clean_en(value: str) -> str | None:
    value = " ".join(value.split()).strip(" '\"")
    value = re.sub(r"(?i)\s+(?:and|but|because|so|though|too|very much|a lot)\b.*$", "", value).strip()
    if not value or value.casefold() in _NOT_A_VALUE_EN:
        return None
    return value


def _japanese_facts(sentence: str, now: datetime) -> list[ExtractedFact]:
    found: list[ExtractedFact] = []
    for pattern in _NAME_JA:
        match = pattern.search(sentence)
        if match and (value := _clean_ja(match["v"])):
            found.append(ExtractedFact("name", value))
            break
    match = _CALL_ME_JA.search(sentence)
    if match and (value := _clean_ja(match["v"])):
        found.append(ExtractedFact("call_me", value))
    negated = False
    for pattern in _DISLIKE_JA:
        match = pattern.search(sentence)
        if match and (value := _clean_ja(match["v"])):
            found.append(ExtractedFact("dislike", value))
            negated = True
            break
    if not negated:
        for pattern in _LIKE_JA:
            match = pattern.search(sentence)
            if match and (value := _clean_ja(match["v"])):
                what = match.groupdict().get("what")
                found.append(ExtractedFact("like", f"{what}: {value}" if what else value))
                break
    match = _PLAN_JA.search(sentence)
    if match:
        clause = _PLAN_JA_TAIL.sub("", match["v"].strip(" 、,")) or match["v"]
        if _PLAN_JA_VERB.search(clause) and not clause.endswith(("た", "だ")):
            found.append(ExtractedFact("plan", f"{_when_label(match['when'], _WHEN_JA[match['when']], now)}: "
                                               f"{match['v'].strip(' 、,')}"))
    return found


def _english_facts(sentence: str, now: datetime) -> list[ExtractedFact]:
    found: list[ExtractedFact] = []
    for pattern in _NAME_EN:
        match = pattern.search(sentence)
        if match and (value := _clean_en(match["v"])):
            found.append(ExtractedFact("name" if pattern is _NAME_EN[0] else "call_me", value))
    match = _DISLIKE_EN.search(sentence)
    if match:
        if value := _clean_en(match["v"]):
            found.append(ExtractedFact("dislike", value))
    else:
        match = _LIKE_EN.search(sentence)
        if match and (value := _clean_en(match["v"])):
            found.append(ExtractedFact("like", value))
    when = _PLAN_EN_WHEN.search(sentence)
    if when and _PLAN_EN_INTENT.search(sentence):
        word = when["when"].lower()
        found.append(ExtractedFact("plan", f"{_when_label(word, _WHEN_EN[word], now)}: {sentence.rstrip('.!')}"))
    return found


def _when_label(word: str, days_ahead: int | None, now: datetime) -> str:
    """「明日」 said on 2026-11-22 -> ``2026-11-23 (明日)``; vague times keep the day they were said."""
    if days_ahead is None:
        return f"{word} (said {now.date().isoformat()})"
    return f"{(now + timedelta(days=days_ahead)).date().isoformat()} ({word})"
