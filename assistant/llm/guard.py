"""What a companion must not say aloud, judged chunk by chunk before it is spoken.

Small chat models (the offline default is a 1.5B model) fall into three habits a listener notices at once:
assistant boilerplate (「何かお手伝いできることはありますか？」, "As an AI language model"), the user's own
words said back ("I'm a bit nervous about my exam tomorrow" to that very sentence), and the prompt's notes
read out (「うれしそうで、」 from the note 「声の様子: うれしそう」). The reply stage asks `ReplyGuard.problem`
about every spoken chunk and drops those with a problem; the rules in config/rules.yaml ask the model not
to do these things, the guard makes sure.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from assistant.text import normalise_phrase

#: Lines an assistant says and a companion does not (narrow on purpose: a dropped chunk is never heard).
BOILERPLATE = re.compile(
    r"何か(お)?手伝い|お手伝い(できること|できますか|しましょうか)|お役に立て|お知らせください|ご用件|サポートいたします|"
    r"AIアシスタント|アシスタントとして|言語モデル|"
    r"how (can|may) i (help|assist)|(anything|something) (else )?(that )?i can (help|do)|assist you|"
    r"as an ai\b|language model|ai assistant",
    re.IGNORECASE,
)
#: A chunk repeats a source when this share of its characters is one unchanged stretch of it.
REPEAT_SHARE = 0.7
#: Chunks shorter than this (normalised characters; words for English) may repeat the user: a greeting
#: answers a greeting (「こんばんは」, "Good night.").
MIN_ECHO_CHARS = 8
MIN_ECHO_WORDS = 4
#: Notes are not words anyone said: a shorter stretch of them read out is already wrong.
MIN_NOTE_CHARS = 5


def repeats(chunk: str, source: str, min_chars: int = MIN_ECHO_CHARS) -> bool:
    """Most of ``chunk`` (`REPEAT_SHARE` of it, at least ``min_chars`` characters) is one stretch of
    ``source`` unchanged."""
    a, b = normalise_phrase(chunk), normalise_phrase(source)
    if len(a) < min_chars or not b:
        return False
    block = difflib.SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return block.size >= max(min_chars, REPEAT_SHARE * len(a))


@dataclass(frozen=True, slots=True)
class ReplyGuard:
    """One turn's guard: the user's words, and the phrases of the notes beside them that must not be read
    out (how the user sounds, the notes' own label — not recalled facts, which a reply may well restate)."""

    user_text: str
    notes: tuple[str, ...] = ()
    #: The notes' labels (「メモ、読み上げないこと」): a chunk holding one reads the notes out, however it goes on.
    labels: tuple[str, ...] = ()

    def problem(self, chunk: str) -> str | None:
        """Why ``chunk`` must not be spoken ("boilerplate", "echo", "note"), or None."""
        if BOILERPLATE.search(chunk):
            return "boilerplate"
        if _long_enough_to_echo(chunk) and repeats(chunk, self.user_text):
            return "echo"
        if any(repeats(chunk, note, MIN_NOTE_CHARS) for note in (*self.labels, *self.notes)):
            return "note"
        heard = normalise_phrase(chunk)
        if any(label and normalise_phrase(label) in heard for label in self.labels):
            return "note"
        return None


def _long_enough_to_echo(chunk: str) -> bool:
    if chunk.isascii():
        return len(chunk.split()) >= MIN_ECHO_WORDS
    return len(normalise_phrase(chunk)) >= MIN_ECHO_CHARS
