"""Cleaning the model's text for speech: markdown, code, URLs, HTML, emoji and stray [tags] never reach the voice.

``SpeechCleaner`` works on a stream (any chunking gives the same result as the whole text) and hands back clean
text and the expression tags it found, in order; ``clean_for_speech`` does the same for a whole string.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable

from assistant.llm.expressions import ExpressionTag, ExpressionVocabulary
from assistant.text import is_japanese_char

#: What the cleaner hands back: clean text (lines separated by "\n") or an expression tag, in stream order.
Piece = str | ExpressionTag

#: A "[" still open after this many characters is literal text (its bracket is dropped).
BRACKET_LIMIT = 30
#: A "<" still open after this many characters is literal text, not an HTML tag.
HTML_LIMIT = 64
#: A link target "(...)" longer than this is given up on; what follows is text again.
LINK_TARGET_LIMIT = 512

_SPACES = " \t\u3000\u00a0"
_URL_CHARS = frozenset(string.ascii_letters + string.digits + "-._~:/?#@!$&'()*+,;=%[]")
#: Characters that end a URL's text more often than they belong to it ("see https://x.org." ).
_URL_TAIL = frozenset(".,:;!?)]'\"*")
_BULLETS = "•・●○■□◆◇▪▫►▶‣◦"
_BLOCK_TAGS = frozenset({"br", "p", "div", "li", "ul", "ol", "tr", "td", "th", "hr", "table", "blockquote",
                         "pre", "h1", "h2", "h3", "h4", "h5", "h6"})
_DIGITS = "0123456789"
_TAG_LIKE = re.compile(r"[\w\-:]*")

# Inline states: what the characters held back may still turn out to be.
_TEXT = "text"
_TICKS = "ticks"              # a run of ` or ~ (inline code, strike-through or a fence)
_CODE = "code"                # inside ```...``` on one line: dropped
_UNDERSCORE = "underscore"    # "_" after a letter: a space in snake_case, nothing around _emphasis_
_URL_START = "url-start"      # maybe the start of http://, https:// or www.
_URL = "url"                  # inside a URL: dropped
_BRACKET = "bracket"          # after "[": an expression tag, a link's text, or an unknown tag
_AFTER_BRACKET = "after-bracket"  # after "]": "(" makes it a link
_LINK_TARGET = "link-target"  # inside a link's "(url)": dropped
_HTML = "html"                # after "<": an HTML tag or a literal "<"

_PICTOGRAPH_RANGES = (
    (0x2300, 0x23FF),    # miscellaneous technical: ⌚ ⏰ ⏩
    (0x2600, 0x27BF),    # miscellaneous symbols and dingbats: ☀ ★ ♪ ♡ ✨ ❤ ✔
    (0x2B00, 0x2BFF),    # arrows and stars: ⭐ ⬆
    (0x3030, 0x3030), (0x303D, 0x303D), (0x3297, 0x3297), (0x3299, 0x3299),
    (0x20E3, 0x20E3),    # combining keycap
    (0xFE00, 0xFE0F),    # variation selectors
    (0x1F000, 0x1FAFF),  # emoji, flags, pictographs, skin tones
    (0xE0000, 0xE007F),  # tag characters (flag sequences)
)


def is_pictograph(ch: str) -> bool:
    """Whether ``ch`` is an emoji or pictograph (or a part of an emoji sequence): never spoken."""
    code = ord(ch)
    return any(low <= code <= high for low, high in _PICTOGRAPH_RANGES)


def _is_ascii_alnum(ch: str) -> bool:
    return len(ch) == 1 and ch.isascii() and ch.isalnum()


def _is_unspoken(ch: str) -> bool:
    return is_pictograph(ch) or unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs")


class SpeechCleaner:
    """Cleans streamed model text for speech, one piece of the stream at a time.

    ``feed`` returns clean text and ``ExpressionTag``s in stream order. Whatever may still turn out to be
    markup (an open "[", the start of a line that may open a code fence or be a list bullet, the start of a
    URL) is held back until it is decided, so feeding a text in any chunks gives the same output as feeding
    it whole. Lines stay separated by "\\n"; fenced code blocks are dropped whole; ``flush`` ends the stream.
    """

    def __init__(self, expression_tags: Iterable[str] = ()) -> None:
        self._vocabulary = ExpressionVocabulary(expression_tags)
        self._out: list[Piece] = []
        self._chars: list[str] = []
        self._last = ""
        # The line.
        self._at_line_start = True
        self._prefix = ""
        self._in_fence = False
        self._fence_char = ""
        self._line_dropped = False
        self._is_table_row = False
        self._separator_pending = False
        self._line_has_text = False
        self._line_is_japanese = False
        # Inside the line.
        self._mode = _TEXT
        self._held = ""
        self._count = 0
        self._dropped = 0

    def feed(self, text: str) -> list[Piece]:
        for ch in text:
            self._char(ch)
        return self._take()

    def flush(self) -> list[Piece]:
        """Ends the stream: an open fence is dropped, an open "[" that looks like a tag too."""
        if self._at_line_start and not self._line_dropped:
            self._resolve_prefix(line_ended=True)
        if not (self._line_dropped or self._in_fence):
            self._settle()
        self._mode, self._held, self._count = _TEXT, "", 0
        self._in_fence = False
        self._reset_line()
        return self._take()

    # ---------------------------------------------------------------------------------------------- lines

    def _char(self, ch: str) -> None:
        if ch == "\r":
            return
        if ch == "\n":
            self._end_line()
        elif self._line_dropped:
            return
        elif self._at_line_start:
            self._prefix += ch
            self._resolve_prefix(line_ended=False)
        else:
            self._inline(ch)

    def _end_line(self) -> None:
        if self._at_line_start and not self._line_dropped:
            self._resolve_prefix(line_ended=True)
        if not (self._line_dropped or self._in_fence):
            self._settle()
            if self._mode == _CODE:  # ``` opened inside the line and not closed: a fenced block begins
                self._mode, self._count = _TEXT, 0
                self._in_fence, self._fence_char = True, "`"
            self._emit("\n")
        self._reset_line()

    def _reset_line(self) -> None:
        self._at_line_start = True
        self._prefix = ""
        self._line_dropped = False
        self._is_table_row = False
        self._separator_pending = False
        self._line_has_text = False
        self._line_is_japanese = False

    def _resolve_prefix(self, line_ended: bool) -> None:
        """Decides what the start of the line is: a fence, a heading, a bullet, a quote, a table row or text."""
        while self._at_line_start:
            start = self._prefix.lstrip(_SPACES)
            self._prefix = start
            if not start:
                return
            if self._in_fence:
                self._resolve_fence_line(start, line_ended)
                return
            marker = _line_marker(start, line_ended)
            if marker is None:
                return  # not decided yet
            kind, length = marker
            if kind == "fence":
                self._in_fence, self._fence_char = True, start[0]
                self._line_dropped, self._at_line_start, self._prefix = True, False, ""
                return
            if kind == "text":
                self._at_line_start, self._prefix = False, ""
                for ch in start:
                    self._inline(ch)
                return
            self._is_table_row = self._is_table_row or kind == "table"
            self._prefix = start[length:]

    def _resolve_fence_line(self, start: str, line_ended: bool) -> None:
        run = len(start) - len(start.lstrip(self._fence_char))
        if run == len(start) and not line_ended:
            return
        if run >= 3:
            self._in_fence = False
        self._line_dropped, self._at_line_start, self._prefix = True, False, ""

    # --------------------------------------------------------------------------------------------- inline

    def _inline(self, ch: str) -> None:
        mode = self._mode
        if mode == _TEXT:
            self._text(ch)
        elif mode == _TICKS:
            if ch == self._held:
                self._count += 1
            else:
                self._end_ticks()
                self._inline(ch)
        elif mode == _CODE:
            if ch == "`":
                self._count += 1
            elif self._count >= 3:
                self._mode, self._count = _TEXT, 0
                self._inline(ch)
            else:
                self._count = 0
        elif mode == _UNDERSCORE:
            self._mode = _TEXT
            if _is_ascii_alnum(ch):
                self._emit(" ")
            self._inline(ch)
        elif mode == _URL_START:
            self._url_start(ch)
        elif mode == _URL:
            self._url(ch)
        elif mode == _BRACKET:
            self._bracket(ch)
        elif mode == _AFTER_BRACKET:
            self._after_bracket(ch)
        elif mode == _LINK_TARGET:
            self._link_target(ch)
        elif mode == _HTML:
            self._html(ch)

    def _text(self, ch: str) -> None:
        if ch in "`~":
            self._mode, self._held, self._count = _TICKS, ch, 1
        elif ch == "_":
            if _is_ascii_alnum(self._last):
                self._mode = _UNDERSCORE
        elif ch in "*\\]］":
            return
        elif ch in "[［":
            self._mode, self._held = _BRACKET, ""
        elif ch == "<":
            self._mode, self._held = _HTML, ""
        elif ch == "|":
            if self._is_table_row:
                self._separator_pending = self._line_has_text
            else:
                self._emit(" ")
        elif ch in "hHwW":
            self._mode, self._held = _URL_START, ch
        elif ch.isspace():
            self._emit(" ")
        elif not _is_unspoken(ch):
            self._emit(ch)

    def _end_ticks(self) -> None:
        tick, run = self._held, self._count
        self._mode, self._held, self._count = _TEXT, "", 0
        if tick == "`" and run >= 3:
            self._mode = _CODE
        elif tick == "~" and run == 1:
            self._emit("~")

    def _url_start(self, ch: str) -> None:
        candidate = self._held + ch
        verdict = _url_start_verdict(candidate.lower())
        if verdict is True:
            self._mode, self._held = _URL, ""
        elif verdict is None:
            self._held = candidate
        else:
            self._mode, self._held = _TEXT, ""
            self._emit(candidate[:-1])
            self._inline(ch)

    def _url(self, ch: str) -> None:
        if ch in _URL_TAIL:
            self._held = (self._held + ch)[-16:]
        elif ch in _URL_CHARS:
            self._held = ""
        else:
            tail = self._held
            self._mode, self._held = _TEXT, ""
            self._refeed(tail)
            self._inline(ch)

    def _bracket(self, ch: str) -> None:
        if ch in "]］":
            self._mode = _AFTER_BRACKET
        elif ch in "[［":  # the earlier "[" never closed: its text is literal
            content = self._held
            self._mode, self._held = _TEXT, ""
            self._refeed(content)
            self._inline(ch)
        else:
            self._held += ch
            if len(self._held) > BRACKET_LIMIT:
                content = self._held
                self._mode, self._held = _TEXT, ""
                self._refeed(content)

    def _after_bracket(self, ch: str) -> None:
        content = self._held
        self._mode, self._held = _TEXT, ""
        name = self._vocabulary.match(content)
        if name is not None:
            self._tag(name)
        elif ch == "(":  # a markdown link: its text is spoken, its target never
            self._refeed(content)
            self._settle()
            self._mode, self._count, self._dropped = _LINK_TARGET, 1, 0
            return
        self._inline(ch)

    def _link_target(self, ch: str) -> None:
        if ch == "(":
            self._count += 1
        elif ch == ")":
            self._count -= 1
            if self._count == 0:
                self._mode = _TEXT
                return
        self._dropped += 1
        if self._dropped > LINK_TARGET_LIMIT:  # not a link target after all: what follows is text again
            self._mode, self._count = _TEXT, 0

    def _html(self, ch: str) -> None:
        held = self._held
        if not held and not (ch.isascii() and (ch.isalpha() or ch in "/!")):
            self._mode = _TEXT
            self._emit("<")
            self._inline(ch)
        elif ch == ">":
            self._mode, self._held = _TEXT, ""
            name = re.match(r"/?([A-Za-z][A-Za-z0-9]*)", held)
            if name is not None and name.group(1).lower() in _BLOCK_TAGS:
                self._emit(" ")
        elif ch == "<" or len(held) >= HTML_LIMIT:
            self._mode, self._held = _TEXT, ""
            self._emit("<")
            self._refeed(held)
            self._inline(ch)
        else:
            self._held = held + ch

    def _refeed(self, text: str) -> None:
        for ch in text:
            self._inline(ch)

    def _settle(self) -> None:
        """Decides whatever is held back, because the line or the stream ended (or a link target begins)."""
        while self._mode not in (_TEXT, _CODE):
            mode, held = self._mode, self._held
            self._mode, self._held = _TEXT, ""
            if mode == _TICKS:
                self._held = held
                self._end_ticks()
            elif mode == _URL_START:
                self._emit(held)
            elif mode == _URL:
                self._refeed(held)
            elif mode == _BRACKET:
                if not _TAG_LIKE.fullmatch(held):  # an unclosed "[" that cannot be a tag: its text is literal
                    self._refeed(held)
            elif mode == _AFTER_BRACKET:
                name = self._vocabulary.match(held)
                if name is not None:
                    self._tag(name)
            elif mode == _HTML:
                self._emit("<")
                self._refeed(held)
            self._count = 0 if self._mode == _TEXT else self._count

    # --------------------------------------------------------------------------------------------- output

    def _emit(self, text: str) -> None:
        for ch in text:
            if self._separator_pending and not ch.isspace():
                self._separator_pending = False
                self._chars.append("、" if self._line_is_japanese else ", ")
            self._chars.append(ch)
            self._last = ch
            if ch != "\n" and not ch.isspace():
                self._line_has_text = True
                self._line_is_japanese = self._line_is_japanese or is_japanese_char(ch)

    def _tag(self, name: str) -> None:
        if self._chars:
            self._out.append("".join(self._chars))
            self._chars.clear()
        self._out.append(ExpressionTag(name))

    def _take(self) -> list[Piece]:
        if self._chars:
            self._out.append("".join(self._chars))
            self._chars.clear()
        out, self._out = self._out, []
        return out


def _url_start_verdict(lowered: str) -> bool | None:
    """Whether ``lowered`` starts a URL (http://, https://, www. and a letter); None while it may still."""
    if lowered in ("http://", "https://") or (len(lowered) == 5 and lowered.startswith("www.")
                                             and _is_ascii_alnum(lowered[4])):
        return True
    if any(start.startswith(lowered) for start in ("http://", "https://", "www.")):
        return None
    return False


def _line_marker(start: str, line_ended: bool) -> tuple[str, int] | None:
    """What the start of a line is, as (kind, length of the marker); None while it cannot be told yet."""
    first = start[0]
    if first in "`~":
        run = len(start) - len(start.lstrip(first))
        if run == len(start) and not line_ended:
            return None
        return ("fence", run) if run >= 3 else ("text", 0)
    if first == "#":
        run = len(start) - len(start.lstrip("#"))
        if run > 6:
            return ("text", 0)
        if run == len(start):
            return ("marker", run) if line_ended else None
        return ("marker", run) if start[run] in _SPACES else ("text", 0)
    if first in _BULLETS or first == ">":
        return ("marker", 1)
    if first == "|":
        return ("table", 1)
    if first in "-*+":
        if len(start) == 1:
            return ("marker", 1) if line_ended else None
        return ("marker", 1) if start[1] in _SPACES else ("text", 0)
    if first in _DIGITS:
        digits = len(start) - len(start.lstrip(_DIGITS))
        if digits > 3:
            return ("text", 0)
        if digits == len(start):
            return ("text", 0) if line_ended else None
        if start[digits] not in ".)．":
            return ("text", 0)
        if digits + 1 == len(start):
            return ("marker", digits + 1) if line_ended else None
        return ("marker", digits + 1) if start[digits + 1] in _SPACES else ("text", 0)
    return ("text", 0)


_DECORATION = re.compile(r"-{3,}|={2,}|_{2,}|#{2,}|[─━═]{2,}|~{2,}")
_REPEATED = re.compile(r"([!?！？。､、,，;；:：~〜])\1+")
_MIDDLE_DOTS = re.compile(r"・{2,}")
_MIXED_MARKS = re.compile(r"([!?！？])([!?！？])[!?！？]+")
_LONG_DOTS = re.compile(r"\.{4,}")
_LONG_LEADERS = re.compile(r"[…‥]{3,}")
_EMPTY_BRACKETS = re.compile(r"\(\s*[,、]?\s*\)|（\s*[,、]?\s*）|「\s*」|『\s*』|【\s*】|\"\s*\"")
_RUNS_OF_SPACE = re.compile(r"[^\S\n]+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r" +(?=[.,!?;:%。、！？，．」』）)】])")
_SPACE_AFTER_OPENING = re.compile(r"(?<=[(「『（【]) +")
_LEADING_JUNK = re.compile(r"^[\s、,，;；:：・」』）)】〕〉》”’»｣。｡！？!?]+")


def tidy_spoken(text: str) -> str:
    """Collapses repeated punctuation and spaces in one clean sentence; "" when nothing speakable is left."""
    text = _DECORATION.sub(" ", text)
    text = _MIXED_MARKS.sub(r"\1\2", text)
    text = _REPEATED.sub(r"\1", text)
    text = _LONG_DOTS.sub("...", text)
    text = _MIDDLE_DOTS.sub("…", text)
    text = _LONG_LEADERS.sub("……", text)
    text = _EMPTY_BRACKETS.sub("", text)
    text = _RUNS_OF_SPACE.sub(" ", text)
    text = _SPACE_BEFORE_PUNCTUATION.sub("", text)
    text = _SPACE_AFTER_OPENING.sub("", text)
    text = _LEADING_JUNK.sub("", text).strip()
    return text if any(ch.isalnum() for ch in text) else ""


def clean_for_speech(text: str, expression_tags: Iterable[str] = ()) -> str:
    """The whole ``text`` made fit to speak: one clean line per line of speech, tags and markup gone."""
    cleaner = SpeechCleaner(expression_tags)
    pieces = [*cleaner.feed(text), *cleaner.flush()]
    joined = "".join(piece for piece in pieces if isinstance(piece, str))
    lines = (tidy_spoken(line) for line in joined.split("\n"))
    return "\n".join(line for line in lines if line)
