"""Text facts the speech, conversation and LLM sides share: which characters are Japanese, which language a
text is in, phrases compared without case, width or punctuation, segment texts joined into one utterance.

One home for each, at the bottom of the package beside ``events.py``: it imports nothing of Saijin.
"""

from __future__ import annotations

import re
import unicodedata

#: What phrase comparison drops: everything but letters and digits (``\w`` is str.isalnum() plus "_").
_NOT_LETTER_OR_DIGIT = re.compile(r"[\W_]+")


def is_japanese_char(ch: str) -> bool:
    """Whether ``ch`` is kana or kanji (half-width katakana, the prolonged sound mark and 々 included)."""
    code = ord(ch)
    return (0x3040 <= code <= 0x30FF or 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF
            or 0xF900 <= code <= 0xFAFF or 0xFF66 <= code <= 0xFF9F or 0x31F0 <= code <= 0x31FF
            or 0x20000 <= code <= 0x2FFFF or code == 0x3005)


def has_japanese(text: str) -> bool:
    """Whether ``text`` holds any kana or kanji."""
    return any(is_japanese_char(ch) for ch in text)


def guess_language(text: str) -> str:
    """ "ja" when ``text`` holds any kana or kanji, else "en"."""
    return "ja" if has_japanese(text) else "en"


def normalise_phrase(text: str) -> str:
    """For comparing phrases: NFKC, case-folded, letters and digits only (no punctuation, symbols or spaces).

    What a listener hears of a text; the same characters as keeping Unicode categories L and N.
    """
    return _NOT_LETTER_OR_DIGIT.sub("", unicodedata.normalize("NFKC", text).casefold())


def _is_cjk(ch: str) -> bool:
    """Kana, kanji, Japanese punctuation or full-width forms: written without spaces between."""
    return "\u3000" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef"


def join_parts(parts: list[str]) -> str:
    """The texts of a turn's segments as one utterance: Japanese parts run on, others get a space."""
    joined = ""
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if joined and not (_is_cjk(joined[-1]) and _is_cjk(part[0])):
            joined += " "
        joined += part
    return joined
