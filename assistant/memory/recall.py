"""What the memory adds to the next prompt: the summary, facts, recalled snippets and recent turns, within a budget.

Recall works for Japanese without a word splitter: the user's text is cut into character trigrams, the
trigrams that appear in many stored turns (「ですね」, 「ている」) are dropped as uninformative, and the
rest are OR'd into one trigram-FTS query ranked by bm25 and recency. 「私の名前、覚えてる？」 thus finds
「私の名前はさくらです」 from 50 turns earlier through 「私の名」 and 「の名前」.

This module reads SQLite: call it through ``asyncio.to_thread`` from the event loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from assistant.memory.facts import format_fact
from assistant.memory.store import MemoryStore, SearchHit, Turn

#: A query uses at most this many trigrams (the first ones of the text).
MAX_QUERY_TERMS = 48
#: A trigram in more than this fraction of all turns (and in at least COMMON_MIN_DOCS) carries no meaning.
COMMON_FRACTION = 0.05
COMMON_MIN_DOCS = 8
#: A recalled snippet is cut to about this many characters around its first match.
SNIPPET_CHARS = 160
#: Budget trimming keeps these until everything less important is gone.
KEEP_RECENT = 2
KEEP_FACTS = 3
MIN_SUMMARY_CHARS = 80
#: At most this many facts go into a prompt.
MAX_FACTS = 12

_RUN = re.compile(r"[^\W_]+|_+", re.UNICODE)


@dataclass
class MemoryContext:
    """The memory part of a prompt. ``chars`` (the texts only; labels and layout are the prompt's) fits the budget."""

    summary: str | None = None
    facts: list[str] = field(default_factory=list)
    snippets: list[str] = field(default_factory=list)
    recent: list[tuple[str, str]] = field(default_factory=list)

    @property
    def chars(self) -> int:
        return (len(self.summary or "") + sum(map(len, self.facts)) + sum(map(len, self.snippets))
                + sum(len(text) for _role, text in self.recent))

    @property
    def is_empty(self) -> bool:
        return not (self.summary or self.facts or self.snippets or self.recent)


def query_terms(text: str, limit: int = MAX_QUERY_TERMS) -> list[str]:
    """The distinct character trigrams of each run of letters in ``text`` (case-folded), in order."""
    terms: dict[str, None] = {}
    for run in _RUN.findall(text.casefold()):
        for start in range(len(run) - 2):
            terms.setdefault(run[start:start + 3])
            if len(terms) >= limit:
                return list(terms)
    return list(terms)


def short_terms(text: str) -> list[str]:
    """Runs of two characters (too short for a trigram), for texts that have no trigram at all."""
    return [run for run in _RUN.findall(text.casefold()) if len(run) == 2]


def informative_terms(store: MemoryStore, terms: list[str]) -> list[str]:
    """``terms`` without those found in so many turns that they say nothing (function-word trigrams)."""
    counts = store.term_document_counts(terms)
    if not counts:
        return terms
    total = store.turn_count()
    ceiling = max(COMMON_MIN_DOCS, COMMON_FRACTION * total)
    return [term for term in terms if counts.get(term, 0) <= ceiling]


def recall_snippets(store: MemoryStore, persona: str, user_text: str, limit: int,
                    exclude_ids: set[int] | frozenset[int] = frozenset()) -> list[SearchHit]:
    """The ``limit`` past turns of ``persona`` that share the most meaningful characters with ``user_text``."""
    if limit <= 0 or not user_text.strip():
        return []
    terms = query_terms(user_text)
    terms = informative_terms(store, terms) if terms else short_terms(user_text)
    if not terms:
        return []
    wanted = user_text.strip()
    hits = store.search_terms(terms, persona=persona, limit=limit * 3, exclude_ids=exclude_ids)
    chosen: list[SearchHit] = []
    seen: set[str] = {wanted}
    for hit in hits:
        if hit.turn.text.strip() in seen:
            continue
        seen.add(hit.turn.text.strip())
        chosen.append(hit)
        if len(chosen) >= limit:
            break
    return chosen


def recall_for_prompt(store: MemoryStore, persona: str, user_text: str, budget_chars: int, recent_turns: int,
                      recall_limit: int, *, current_turn: int | None = None, max_facts: int = MAX_FACTS,
                      ) -> MemoryContext:
    """The memory for the prompt answering ``user_text``, never more than ``budget_chars`` characters.

    ``current_turn`` is the row id of ``user_text`` if it is stored already; it is left out of ``recent``
    (the prompt carries it as the user's message). Without it, a last stored user turn with the same
    text is taken to be it. Recalled snippets never repeat a turn that is in ``recent``.
    """
    rows = store.recent(persona, recent_turns + 1) if recent_turns > 0 else store.recent(persona, 1)
    exclude = {turn.id for turn in rows}
    if current_turn is not None:
        exclude.add(current_turn)
        rows = [turn for turn in rows if turn.id != current_turn]
    elif rows and rows[-1].role == "user" and rows[-1].text.strip() == user_text.strip():
        rows = rows[:-1]
    recent = rows[-recent_turns:] if recent_turns > 0 else []

    summary = store.latest_summary(persona)
    hits = recall_snippets(store, persona, user_text, recall_limit, exclude)
    terms = query_terms(user_text) or short_terms(user_text)
    context = MemoryContext(
        summary=summary.text.strip() if summary and summary.text.strip() else None,
        facts=_fact_lines(store, persona, terms, max_facts),
        snippets=[_snippet(hit.turn, terms) for hit in hits],
        recent=[(turn.role, turn.text) for turn in recent],
    )
    fit_to_budget(context, budget_chars)
    return context


def fit_to_budget(context: MemoryContext, budget: int) -> MemoryContext:
    """Trim ``context`` in place until it fits ``budget`` characters, least important first.

    Order: the oldest recent turns (keeping the last two) and the lowest-ranked snippets, taking from
    whichever holds more characters;
    the least relevant facts (keeping three); the summary (shortened, then dropped); the remaining facts;
    the remaining recent turns, oldest first; finally the last turn is shortened, keeping its end.
    """
    budget = max(0, budget)
    while context.chars > budget and (len(context.recent) > KEEP_RECENT or context.snippets):
        # Take from whichever of the two holds more characters, so neither is emptied for the other.
        older = sum(len(text) for _role, text in context.recent[:-KEEP_RECENT]) if KEEP_RECENT else 0
        if len(context.recent) > KEEP_RECENT and older >= sum(map(len, context.snippets)):
            context.recent.pop(0)
        else:
            context.snippets.pop()
    while context.chars > budget and len(context.facts) > KEEP_FACTS:
        context.facts.pop()
    if context.chars > budget and context.summary:
        room = budget - (context.chars - len(context.summary))
        context.summary = _shorten_head(context.summary, room) if room >= MIN_SUMMARY_CHARS else None
    while context.chars > budget and context.facts:
        context.facts.pop()
    while context.chars > budget and len(context.recent) > 1:
        context.recent.pop(0)
    if context.chars > budget and context.recent:
        role, text = context.recent[-1]
        room = budget - (context.chars - len(text))
        context.recent = [(role, _shorten_tail(text, room))] if room > 1 else []
    return context


def _fact_lines(store: MemoryStore, persona: str, terms: list[str], limit: int) -> list[str]:
    """Facts that share trigrams with the user's text first, then the newest ones."""
    if limit <= 0:
        return []
    relevant = store.search_facts(terms, persona=persona, limit=limit) if terms else []
    ordered = {fact.id: fact for fact in relevant}
    for fact in store.facts(persona, limit=limit):
        ordered.setdefault(fact.id, fact)
    return [format_fact(fact) for fact in list(ordered.values())[:limit]]


def _snippet(turn: Turn, terms: list[str]) -> str:
    """``[2026-11-20] user: …text around the first match…``"""
    text = " ".join(turn.text.split())
    if len(text) > SNIPPET_CHARS:
        folded = text.casefold()
        positions = [folded.find(term) for term in terms if term in folded]
        first = min(positions) if positions else 0
        start = max(0, min(first - SNIPPET_CHARS // 4, len(text) - SNIPPET_CHARS))
        end = start + SNIPPET_CHARS
        text = ("…" if start > 0 else "") + text[start:end] + ("…" if end < len(text) else "")
    day = datetime.fromtimestamp(turn.created_at).date().isoformat()
    return f"[{day}] {turn.role}: {text}"


def _shorten_head(text: str, room: int) -> str:
    return text if len(text) <= room else text[: room - 1] + "…"


def _shorten_tail(text: str, room: int) -> str:
    return text if len(text) <= room else "…" + text[-(room - 1):]
