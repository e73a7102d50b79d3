"""Turning the model's streamed text into clean spoken sentences, each handed on as soon as it is complete.

``SpokenTextStream`` is fed every streamed token. It cleans the text for speech (``cleaning``), splits it into
sentences for Japanese and English, takes expression tags such as ``[joy]`` out of the spoken text and hands
them back as ``ExpressionTag`` in stream order, and bounds what is spoken: a sentence never runs past
``max_sentence_chars`` and the reply stops at ``max_reply_chars`` (``is_exhausted``; the caller then stops
the model). The output does not depend on how the stream is chunked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from assistant.llm.cleaning import Piece, SpeechCleaner, tidy_spoken
from assistant.llm.expressions import ExpressionTag
from assistant.text import guess_language, is_japanese_char

__all__ = ["ExpressionTag", "Sentence", "SpokenTextStream", "split_sentences"]


@dataclass(frozen=True, slots=True)
class Sentence:
    """One clean sentence to speak and show, with its language guessed from its characters ("ja" or "en")."""

    text: str
    language: str


#: A full stop ends the sentence at once (unless a bracket opened in the sentence is still open).
_FULL_STOPS = "。｡"
#: These end it once the next character shows that nothing more belongs to it (！？ 」 ...).
_FULL_MARKS = "！？"
_ASCII_MARKS = "!?"
_DOTS = ".．"
_TERMINATORS = _FULL_STOPS + _FULL_MARKS + _ASCII_MARKS + _DOTS
_CLOSERS = "」』）)]】〕〉》\"'”’｣»"
#: What may follow a terminator and still belong to its sentence.
_RUN = _TERMINATORS + "…‥" + _CLOSERS
_BRACKET_PAIRS = (("「", "」"), ("『", "』"), ("（", "）"), ("(", ")"), ("“", "”"))
#: Never the first character of a sentence (left over after a sentence ended at its full stop).
_NOT_LEADING = _CLOSERS + "。｡！？!?、，,;；:："
#: Where the first clause may be cut; "," only when a space follows (never in 1,000).
_CLAUSE_MARKS = "、，"
#: Japanese particles that end a clause ("疲れたけど|楽しかった"), cut after when a new word follows.
_JA_CONJUNCTIVE = ("けれど", "けど", "ので", "のに", "から", "ながら", "たら", "ても")
#: What may continue a particle phrase ("からは", "のでね", "てもいい"): no cut before these.
_JA_CONTINUING = "はもがをにのだでとへやねよかなさわっゃゅょー、，。！？!?…"
#: One-character particles after a content word ("今日は|一日中", "電車で|学校へ"); the first ones also before
#: a hiragana word ("家で|ゆっくり"); が and と only before kanji or katakana (曲がる, 撫でる are single words).
_JA_PARTICLES = "はをにでもへ"
_JA_PARTICLES_BEFORE_CONTENT = "がと"
#: Never the start of the word after a particle: verb endings (撫で|る), です, でした, できる (勉強で|きる).
_JA_VERB_ENDINGS = "るれらりろすしきち"
#: English words a clause may start with: the first clause may end before them ("... day | because ...").
#: ("and", "or", "so", "that" are left out: they join words as often as clauses, "Jones and Lee", "so happy").
_EN_CLAUSE_WORDS = frozenset({"but", "because", "when", "if", "which", "who", "while", "though", "although",
                              "since", "until", "before", "after", "unless"})
#: Shortest first clause worth speaking alone, and shortest rest after a cut between words, per language.
_MIN_CLAUSE = {"ja": 4, "en": 8}
_MIN_REST = {"ja": 4, "en": 10}
#: Where an over-long sentence may be cut, besides spaces.
_SOFT_CUTS = "、，,;；"
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "cf", "approx",
                            "inc", "ltd", "corp", "dept", "fig", "vol", "ca", "ft", "mt"})
#: e.g, i.e, U.S, a.m, J.R.R or a single initial: the "." that follows does not end a sentence.
_DOTTED = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]|[A-Z]")
_OPENING = "(\"'「『“‘（"


class SpokenTextStream:
    """Splits a streamed reply into clean spoken ``Sentence``s and ``ExpressionTag``s, as soon as each is known.

    ``feed`` takes each streamed piece of text, ``flush`` ends the stream; both return what became complete.
    The first sentence of the reply is spoken in two parts when it is longer than ``first_clause_chars``
    (Japanese; 2.5 times that for English, which says more letters per second; 0: never), so the first audio comes sooner: it is cut at its first 、/，/", "
    (a clause of at least 4 characters, "はい、" stays with its sentence), else at the first word boundary after
    about ``first_clause_chars``: after a Japanese particle followed by a new word ("けど", "ので", "今日は|一日"), or
    before an English clause word ("because", "and"). A cut between words waits for a few characters more, so a
    sentence that ends right there stays whole. Later sentences stay whole for natural prosody. A sentence longer than ``max_sentence_chars`` is cut at its last comma or
    space before the limit (hard at the limit if there is none). The reply ends within ``max_reply_chars``, at
    a sentence or clause boundary; then ``is_exhausted`` is true and everything fed after is ignored.
    """

    def __init__(self, expression_tags: Sequence[str], max_sentence_chars: int = 120, max_reply_chars: int = 400,
                 first_clause_chars: int = 12) -> None:
        if max_sentence_chars < 1 or max_reply_chars < 1:
            raise ValueError("max_sentence_chars and max_reply_chars must be at least 1")
        self._cleaner = SpeechCleaner(expression_tags)
        self._max_sentence = max_sentence_chars
        self._max_reply = max_reply_chars
        self._first_clause = first_clause_chars
        self._buf = ""
        self._spoken_chars = 0
        self._sentence_count = 0
        #: Where the first clause will be cut, and the length of the sentence at which the cut is made.
        self._cut: tuple[int, int] | None = None
        self._exhausted = False
        self._out: list[Sentence | ExpressionTag] = []

    @property
    def is_exhausted(self) -> bool:
        """The reply reached ``max_reply_chars``: nothing more will be spoken, the caller stops the stream."""
        return self._exhausted

    @property
    def spoken_chars(self) -> int:
        """Characters handed out as sentences so far."""
        return self._spoken_chars

    def feed(self, text: str) -> list[Sentence | ExpressionTag]:
        if not self._exhausted:
            for piece in self._cleaner.feed(text):
                self._take(piece)
        return self._drain()

    def flush(self) -> list[Sentence | ExpressionTag]:
        """Ends the stream: whatever is left becomes the last sentence."""
        if not self._exhausted:
            for piece in self._cleaner.flush():
                self._take(piece)
            if not self._exhausted:
                self._end_sentence()
        return self._drain()

    # ------------------------------------------------------------------------------------------------

    def _take(self, piece: Piece) -> None:
        if isinstance(piece, ExpressionTag):
            if self._exhausted:
                return
            run = self._pending_run()
            if run and self._ends_sentence(run, " "):  # a tag after "Hello." belongs to what follows
                self._end_sentence()
            self._out.append(piece)
            return
        for ch in piece:
            if self._exhausted:
                return
            self._push(ch)

    def _push(self, ch: str) -> None:
        if ch == "\n":
            self._end_sentence()
            return
        if self._buf:
            run = self._pending_run()
            if run and ch not in _RUN:
                if self._ends_sentence(run, ch):
                    self._end_sentence()
            elif self._in_first_sentence():
                self._note_boundary_before(ch)
        if ch.isspace():
            if not self._buf or self._buf[-1] == " ":
                return
            ch = " "
        elif not self._buf and ch in _NOT_LEADING:
            return
        self._buf += ch
        self._bound_length()
        if self._exhausted or not self._buf.endswith(ch):
            return
        if ch in _FULL_STOPS and not self._has_open_bracket():
            self._end_sentence()
            return
        if self._in_first_sentence():
            if ch in _CLAUSE_MARKS:
                self._offer_cut(len(self._buf), at_word=False)
            self._cut_first_clause_when_due()

    def _pending_run(self) -> str:
        """The terminator run ("." "！」" "?\"") the sentence ends in, still waiting for what follows; or ""."""
        buf = self._buf
        start = len(buf)
        while start > 0 and buf[start - 1] in _RUN:
            start -= 1
        for index in range(start, len(buf)):
            if buf[index] in _TERMINATORS:
                return buf[index:]
        return ""

    def _ends_sentence(self, run: str, following: str) -> bool:
        if run[-1] in _CLOSERS and following in "とっ":  # 「本当？」と聞いた: the quote goes on
            return False
        if any(ch in _FULL_STOPS or ch in _FULL_MARKS for ch in run):
            return True
        if not (following.isspace() or is_japanese_char(following)):  # 3.14, e.g., example.com, Yahoo!Japan
            return False
        if any(ch in _ASCII_MARKS for ch in run):
            return True
        if sum(ch in ".．…‥" for ch in run) > 1:  # an ellipsis goes on
            return False
        return not self._ends_in_abbreviation(len(run))

    def _ends_in_abbreviation(self, run_length: int) -> bool:
        token = self._buf[: len(self._buf) - run_length].rsplit(" ", 1)[-1].lstrip(_OPENING)
        return bool(token) and (token.lower() in _ABBREVIATIONS or _DOTTED.fullmatch(token) is not None)

    def _has_open_bracket(self) -> bool:
        return any(self._buf.count(opening) > self._buf.count(closing) for opening, closing in _BRACKET_PAIRS)

    # -------------------------------------------------------------------------------- the first clause

    def _in_first_sentence(self) -> bool:
        return self._sentence_count == 0 and self._first_clause > 0 and bool(self._buf)

    def _short_chars(self, language: str) -> int:
        """A first sentence up to this long is spoken whole."""
        return self._first_clause if language == "ja" else self._first_clause * 5 // 2

    def _note_boundary_before(self, ch: str) -> None:
        """A clause boundary between the text so far and ``ch``: ", " or a word boundary (see the class)."""
        buf = self._buf
        if buf[-1] == "," and ch.isspace():
            self._offer_cut(len(buf), at_word=False)
        elif is_japanese_char(ch) or is_japanese_char(buf[-1]):
            if _japanese_clause_ends(buf, ch):
                self._offer_cut(len(buf), at_word=True)
        elif ch.isspace() and buf[-1].isalpha():
            head, _, word = buf.rpartition(" ")
            if head and word.lower() in _EN_CLAUSE_WORDS:
                self._offer_cut(len(head), at_word=True)

    def _offer_cut(self, at: int, at_word: bool) -> None:
        if self._cut is not None or self._has_open_bracket():
            return
        language = guess_language(self._buf)
        short = self._short_chars(language)
        if at < (short - short // 4 if at_word else _MIN_CLAUSE[language]):
            return
        due = max(short + 1, at + _MIN_REST[language]) if at_word else max(short + 1, at)
        self._cut = (at, due)

    def _cut_first_clause_when_due(self) -> None:
        if self._cut is None or len(self._buf) < self._cut[1] or self._buf[-1] in _RUN:
            return  # not yet, or the sentence may be ending right here (then it goes out whole)
        at = self._cut[0]
        head, self._buf = self._buf[:at], self._buf[at:].lstrip()
        self._emit(head)

    def _bound_length(self) -> None:
        """Cuts the sentence when it grows past ``max_sentence_chars`` or past what the reply has left."""
        left = self._max_reply - self._spoken_chars
        limit = min(self._max_sentence, left)
        if len(self._buf) <= limit:
            return
        if left <= self._max_sentence:  # the reply ends here: at a clause boundary, or before this sentence
            cut = _soft_cut(self._buf, limit, at_spaces=False)
            if cut is not None:
                self._emit(self._buf[:cut])
            self._buf = ""
            self._exhausted = True
            return
        cut = _soft_cut(self._buf, limit)
        if cut is None:
            cut = limit
        piece, self._buf = self._buf[:cut], self._buf[cut:].lstrip()
        self._emit(piece)

    def _end_sentence(self) -> None:
        text, self._buf = self._buf, ""
        self._emit(text)

    def _emit(self, text: str) -> None:
        spoken = tidy_spoken(text)
        if not spoken:
            return
        self._cut = None
        self._out.append(Sentence(spoken, guess_language(spoken)))
        self._spoken_chars += len(spoken)
        self._sentence_count += 1
        if self._spoken_chars >= self._max_reply:
            self._exhausted = True

    def _drain(self) -> list[Sentence | ExpressionTag]:
        out, self._out = self._out, []
        return out


def _japanese_clause_ends(text: str, following: str) -> bool:
    """Whether a Japanese clause may end between ``text`` and ``following`` (never inside a word)."""
    if following in _JA_CONTINUING or following.isspace() or not text:
        return False
    for particle in _JA_CONJUNCTIVE:
        before = text[:-len(particle)]
        if text.endswith(particle) and before and _is_kana_or_kanji(before[-1]):
            return True
    last = text[-1]
    if last == "を":
        return True
    if len(text) < 2 or not _is_content_char(text[-2]):
        return False
    if last in _JA_PARTICLES_BEFORE_CONTENT:
        return _is_content_char(following)
    return last in _JA_PARTICLES and (_is_content_char(following) or (
        _is_kana_or_kanji(following) and following not in _JA_VERB_ENDINGS))


def _is_content_char(ch: str) -> bool:
    """Kanji or katakana: the characters Japanese content words are written in."""
    return "\u4e00" <= ch <= "\u9fff" or ch == "々" or "\u30a1" <= ch <= "\u30fa"


def _is_kana_or_kanji(ch: str) -> bool:
    return _is_content_char(ch) or "\u3041" <= ch <= "\u3096"


def _soft_cut(text: str, limit: int, at_spaces: bool = True) -> int | None:
    """Where to cut ``text`` so the first part is at most ``limit`` long: after the last comma or at a space."""
    for index in range(min(limit, len(text) - 1), 0, -1):
        ch = text[index]
        if ch == " " and at_spaces:
            return index
        if ch in _SOFT_CUTS and index < limit and not (ch == "," and text[index + 1:index + 2].isdigit()):
            return index + 1
    return None


def split_sentences(text: str, expression_tags: Iterable[str] = (), max_sentence_chars: int = 120,
                    max_reply_chars: int = 400, first_clause_chars: int = 12) -> list[Sentence | ExpressionTag]:
    """A whole reply split as ``SpokenTextStream`` would split it streamed."""
    stream = SpokenTextStream(tuple(expression_tags), max_sentence_chars, max_reply_chars, first_clause_chars)
    return [*stream.feed(text), *stream.flush()]
