"""Reply quality and speed of a chat engine: a fixed set of companion prompts, the persona's real prompt.

Each prompt is a moment a companion meets (tired, happy, anxious, a question, bedtime, a remembered fact),
in Japanese or English. ``run_replies`` answers them through the project's prompt builder with one engine
and times the first token and the whole reply; ``reply_problems`` names what a good reply never does
(wrong language, too long, an echo, markup, assistant boilerplate). ``python -m assistant.bench.replies``
prints the markdown table of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from assistant.config.loader import Settings
from assistant.config.schema import GenerationConfig
from assistant.llm.engine import ChatEngine
from assistant.llm.prompt import UserMood, build_messages, reply_guard
from assistant.llm.sentences import Sentence, split_sentences
from assistant.memory.recall import MemoryContext
from assistant.text import has_japanese, normalise_phrase


@dataclass(frozen=True)
class ReplyPrompt:
    """One user turn, with what the companion knows at that moment."""

    id: str
    language: str
    text: str
    mood: str | None = None
    mode: str = "normal"
    facts: tuple[str, ...] = ()
    history: tuple[tuple[str, str], ...] = ()

    @property
    def remembered(self) -> list[str]:
        """Lines the reply must not parrot: remembered facts and earlier turns."""
        return [fact.partition(": ")[2] or fact for fact in self.facts] + [text for _role, text in self.history]


PROMPTS: tuple[ReplyPrompt, ...] = (
    ReplyPrompt("ja-tired", "ja", "こんばんは、今日はちょっと疲れちゃった。", mood="sad"),
    ReplyPrompt("ja-happy", "ja", "聞いて！資格の試験に合格したよ！", mood="happy"),
    ReplyPrompt("ja-anxious", "ja", "明日の面接が不安で、どきどきしてる。", mood="fearful"),
    ReplyPrompt("ja-question", "ja", "雨の日って、何をして過ごすのが好き？"),
    ReplyPrompt("ja-bedtime", "ja", "そろそろ寝るね。おやすみ。", mode="bedtime"),
    ReplyPrompt("ja-fact", "ja", "うちの猫の名前、覚えてる？", facts=("the user's name: さくら", "the user likes: 猫のミケ")),
    ReplyPrompt("ja-later-turn", "ja", "お寺がすごくきれいだったよ。",
                history=(("user", "週末に京都へ行ってきたんだ。"), ("assistant", "京都、いいですね。どこを歩いたんですか。"))),
    ReplyPrompt("en-tired", "en", "Hi, I'm so tired after work today.", mood="sad"),
    ReplyPrompt("en-happy", "en", "Guess what, I finally finished my painting!", mood="happy"),
    ReplyPrompt("en-anxious", "en", "I have a doctor's appointment tomorrow and I'm nervous.", mood="fearful"),
    ReplyPrompt("en-question", "en", "What do you like to do on a rainy day?"),
    ReplyPrompt("en-bedtime", "en", "I'm going to sleep now. Good night.", mode="bedtime"),
    ReplyPrompt("en-fact", "en", "Do you remember my dog's name?",
                facts=("the user's name: Sam", "the user likes: their dog Biscuit")),
    ReplyPrompt("en-lonely", "en", "I feel a bit lonely tonight.", mood="sad"),
)

#: What an assistant says and a companion does not (Japanese and English).
BOILERPLATE = re.compile(
    r"手伝い|お役に立て|何かできること|何か他に|お知らせください|ご質問|ご用件|サポートいたします|AIアシスタント|アシスタントとして|"
    r"how can i (help|assist)|i can help|help you with|assist you|anything else|as an ai|language model|ai assistant",
    re.IGNORECASE,
)
#: Markup a spoken reply must not contain (expression tags such as [joy] are allowed by the rules).
MARKUP = re.compile(r"\*\*|__|`|^\s*#|^\s*[-*•]\s|^\s*\d+\.\s|https?://|\|.*\||<[^>]+>", re.MULTILINE)
EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")
_SENTENCE = re.compile(r"[^。！？!?.]+[。！？!?.]*")
#: A sentence longer than this (characters; Japanese, English) is not short.
SHORT_SENTENCE_CHARS = {"ja": 60, "en": 140}
ECHO_RATIO = 0.6


@dataclass
class ReplyResult:
    prompt: ReplyPrompt
    reply: str
    raw: str
    first_token_ms: float | None
    total_ms: float
    #: Problems of what is heard (after the reply guard).
    problems: list[str] = field(default_factory=list)
    #: What the reply guard kept from being spoken, with why.
    dropped: list[tuple[str, str]] = field(default_factory=list)


def spoken_sentences(raw: str, expression_tags: Sequence[str] = ()) -> list[str]:
    """The reply as it is spoken, cut into sentences at their end marks (not at the early first clause)."""
    pieces = split_sentences(raw, expression_tags, max_sentence_chars=10_000, max_reply_chars=10_000,
                             first_clause_chars=10_000)
    text = "".join(p.text if p.text.endswith(" ") or not p.text[-1:].isascii() else p.text + " "
                   for p in pieces if hasattr(p, "text")).strip()
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip(" 。！？!?.")]


def is_echo(reply: str, line: str) -> bool:
    """The reply repeats ``line``: one stretch of it (most of ``line``'s characters) comes back unchanged."""
    a, b = normalise_phrase(reply), normalise_phrase(line)
    if len(b) < 6 or not a:
        return False
    block = difflib.SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return block.size >= max(6, ECHO_RATIO * len(b))


def reply_problems(prompt: ReplyPrompt, raw: str, expression_tags: Sequence[str] = ()) -> list[str]:
    """What is wrong with ``raw`` as a companion's spoken reply to ``prompt`` (empty: nothing)."""
    problems: list[str] = []
    sentences = spoken_sentences(raw, expression_tags)
    spoken = " ".join(sentences)
    if not sentences:
        return ["nothing to say"]
    if prompt.language == "ja" and not has_japanese(spoken):
        problems.append("not Japanese")
    if prompt.language == "en" and (has_japanese(spoken) or sum(ch.isascii() for ch in spoken) < 0.95 * len(spoken)):
        problems.append("not English")
    if len(sentences) > 3:
        problems.append(f"{len(sentences)} sentences")
    longest = max(sentences, key=len)
    if len(longest) > SHORT_SENTENCE_CHARS[prompt.language]:
        problems.append(f"a sentence of {len(longest)} characters")
    if is_echo(spoken, prompt.text):
        problems.append("echoes the user")
    if any(is_echo(spoken, line) for line in prompt.remembered if len(normalise_phrase(line)) >= 6):
        problems.append("parrots a remembered line")
    tags = "|".join(map(re.escape, expression_tags))
    tagless = re.sub(rf"\[({tags})\]", "", raw) if expression_tags else raw
    if MARKUP.search(tagless) or EMOJI.search(tagless):
        problems.append("markup or emoji")
    if BOILERPLATE.search(raw):
        problems.append("assistant boilerplate")
    return problems


def prompt_messages(settings: Settings, persona_id: str, prompt: ReplyPrompt) -> list:
    """The messages the reply stage would send for ``prompt`` (the project's prompt builder)."""
    persona = settings.persona(persona_id)
    memory = MemoryContext(facts=list(prompt.facts)) if prompt.facts else None
    mood = UserMood(prompt.mood, 0.9) if prompt.mood else None
    return build_messages(settings.rules, persona, prompt.text, prompt.mode, mood, memory, prompt.history)


async def run_replies(engine: ChatEngine, settings: Settings, persona_id: str,
                      prompts: Sequence[ReplyPrompt] = PROMPTS, generation: GenerationConfig | None = None,
                      ) -> list[ReplyResult]:
    """Answer every prompt with ``engine`` (one after another) and judge each reply."""
    generation = generation or GenerationConfig()
    tags = settings.rules.expression_tags
    results: list[ReplyResult] = []
    for prompt in prompts:
        messages = prompt_messages(settings, persona_id, prompt)
        started = time.perf_counter()
        first: float | None = None
        pieces: list[str] = []
        async for piece in engine.stream(messages, generation):
            if first is None:
                first = (time.perf_counter() - started) * 1000
            pieces.append(piece)
        total = (time.perf_counter() - started) * 1000
        raw = "".join(pieces).strip()
        heard, dropped = guarded(raw, prompt, settings)
        results.append(ReplyResult(prompt, " ".join(spoken_sentences(heard, tags)), raw, first, total,
                                   reply_problems(prompt, heard, tags), dropped))
    return results


def guarded(raw: str, prompt: ReplyPrompt, settings: Settings) -> tuple[str, list[tuple[str, str]]]:
    """What the reply stage speaks of ``raw``: its chunks (the first clause cut early, as spoken) that the
    reply guard lets through, and the chunks it dropped with why."""
    rules = settings.rules
    guard = reply_guard(prompt.text, UserMood(prompt.mood, 0.9) if prompt.mood else None)
    kept: list[str] = []
    dropped: list[tuple[str, str]] = []
    for piece in split_sentences(raw, rules.expression_tags, rules.max_sentence_chars, 10_000):
        if not isinstance(piece, Sentence):
            kept.append(f"[{piece.name}]")
            continue
        text = piece.text
        problem = guard.problem(text)
        if problem is None:
            kept.append(text if text.endswith(" ") or not text[-1:].isascii() else text + " ")
        else:
            dropped.append((text, problem))
    return "".join(kept).strip(), dropped


def markdown_table(results: Sequence[ReplyResult]) -> str:
    lines = ["| prompt | user | reply as heard | first token ms | total ms | problems | not spoken (guard) |",
             "|---|---|---|---:|---:|---|---|"]
    for r in results:
        cells = [r.prompt.id, r.prompt.text, r.reply or "(nothing)",
                 f"{r.first_token_ms:.0f}" if r.first_token_ms is not None else "-", f"{r.total_ms:.0f}",
                 ", ".join(r.problems) or "none", "; ".join(f"{t} ({why})" for t, why in r.dropped) or "-"]
        lines.append("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> None:
    from assistant.config import load_settings
    from assistant.llm.embedded import EmbeddedEngine

    settings = load_settings(Path(args.config), args.profile)
    config = settings.routing.engines[args.engine].model_copy()
    if args.model:
        config.model = args.model
    engine = EmbeddedEngine(args.engine, config, settings.config_dir)
    await engine.check()
    await run_replies(engine, settings, args.persona, PROMPTS[:1], config.generation)  # warm: load, first decode
    results = await run_replies(engine, settings, args.persona, PROMPTS, config.generation)
    print(markdown_table(results))
    await engine.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--engine", default="AI_2")
    parser.add_argument("--model", default=None, help="a GGUF path or offline:NAME instead of the engine's")
    parser.add_argument("--persona", default="yuuri")
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
