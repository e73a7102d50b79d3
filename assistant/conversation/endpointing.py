"""Has the user finished? Judging words so far as complete or unfinished, for the end of turn and for merging.

Pure functions over text: the turn controller asks them when a segment's transcript arrives at a pause
(how long to wait before the turn ends) and when the user speaks again before the reply is heard (one turn
or two). A finished sentence ends with 。？！ or a sentence-final particle (「ね」「よ」「の？」) or a full stop;
an unfinished one ends in a connective (「て」「けど」「から」, "and", "but"), a comma, or no punctuation.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from assistant.text import has_japanese

Completion = Literal["complete", "unfinished", "unclear"]

#: Japanese endings after which a speaker usually goes on (connective particles and forms, fillers).
_JA_UNFINISHED = ("て", "で", "けど", "けれど", "から", "ので", "のに", "が", "し", "たり", "だり", "とか", "と",
                  "ば", "たら", "なら", "ながら", "それで", "でも", "って", "は", "を", "に", "も", "えっと", "えーと",
                  "あの", "その")
#: Japanese endings of a finished sentence: sentence-final particles, predicate ends. Checked first, so
#: 「ですね」 is complete although 「ね」 follows nothing unfinished, and 「でした」 although it ends in 「た」.
_JA_COMPLETE = ("ね", "よ", "な", "か", "の", "わ", "ぞ", "さ", "です", "ます", "ました", "でした", "ません", "だ",
                "た", "ない", "たい", "ちゃった", "じゃった", "てる", "る", "う", "ください", "でしょ", "かも",
                "ほしい", "しい", "いい", "こんにちは", "こんばんは")
_EN_UNFINISHED = frozenset({"and", "but", "so", "or", "because", "cause", "the", "a", "an", "to", "of", "with",
                            "for", "in", "on", "at", "my", "your", "if", "when", "that", "which", "um", "uh",
                            "like", "then", "also", "is", "are", "was", "i", "we", "you"})

_TRAILING = re.compile(r"[\s\"'」』）)\]]+$")
_FINAL_MARKS = "。.!?！？"


def judge_completion(text: str) -> Completion:
    """complete, unfinished or unclear: what the last words of ``text`` sound like."""
    text = _TRAILING.sub("", unicodedata.normalize("NFKC", text))
    if not text:
        return "unclear"
    if text.endswith(("...", "…", "‥")) or text[-1] in "、,，;:-–—":
        return "unfinished"
    body = text.rstrip(_FINAL_MARKS)
    mark = text[len(body):]
    if "?" in mark or "!" in mark or "？" in mark or "！" in mark:
        return "complete"
    if has_japanese(text):
        # Whisper writes 。 at most pauses, so the words decide: 「疲れちゃって。」 is unfinished.
        if body.endswith(_JA_UNFINISHED) and not body.endswith(_JA_COMPLETE):
            return "unfinished"
        if mark or body.endswith(_JA_COMPLETE):
            return "complete"
        return "unclear"
    words = re.findall(r"[a-z']+", body.lower())
    if words and words[-1] in _EN_UNFINISHED:
        return "unfinished"
    if mark:
        return "complete"
    return "unfinished" if words else "unclear"


def merges_with_previous(gap_s: float, previous_text: str | None, merge_pause_s: float) -> bool:
    """The user speaks again before the reply to their last words was heard: is it the same turn?

    Yes after a short pause (a breath, a search for a word), or whatever the pause when the last words were
    clearly unfinished; otherwise it is a new question that gets its own answer."""
    if gap_s <= merge_pause_s:
        return True
    return previous_text is not None and judge_completion(previous_text) == "unfinished"

