"""Cleaning for speech: markdown, code, URLs, HTML, emoji and stray tags out; what is meant to be said stays."""

from __future__ import annotations

import pytest

from assistant.llm.cleaning import SpeechCleaner, clean_for_speech, is_pictograph, tidy_spoken
from assistant.llm.expressions import ExpressionTag, ExpressionVocabulary

TAGS = ["joy", "sad"]


@pytest.mark.parametrize(("raw", "spoken"), [
    # markdown
    ("# Heading\n## 見出し\n###### Six", "Heading\n見出し\nSix"),
    ("#hashtag stays", "#hashtag stays"),
    ("This is **bold**, *em*, _em_ and __strong__.", "This is bold, em, em and strong."),
    ("とても**大事**なことです。", "とても大事なことです。"),
    ("Run `pip install saijin` now.", "Run pip install saijin now."),
    ("- one\n* two\n+ three\n• four\n・五つ", "one\ntwo\nthree\nfour\n五つ"),
    ("1. first\n2) second\n10. tenth", "first\nsecond\ntenth"),
    ("  - indented bullet\n    1. nested", "indented bullet\nnested"),
    ("> quoted\n>> twice", "quoted\ntwice"),
    ("- > **mixed** markers", "mixed markers"),
    ("| 名前 | 値 |\n|:---|---:|\n| りんご | 三つ |", "名前、値\nりんご、三つ"),
    ("| name | value |\n| --- | --- |\n| apple | 3 |", "name, value\napple, 3"),
    ("See [the guide](https://example.com/guide) and [this](http://a.b/(x)) too.", "See the guide and this too."),
    ("~~old~~ new, about 5~6 people", "old new, about 5~6 people"),
    ("---\n***\n___\n===", ""),
    ("snake_case_name and foo__bar", "snake case name and foo bar"),
    ("Escaped \\*stars\\* go", "Escaped stars go"),
    # code
    ("Before.\n```python\nprint('hi')\n```\nAfter.", "Before.\nAfter."),
    ("Before.\n~~~\ncode\n~~~\nAfter.", "Before.\nAfter."),
    ("- item\n  ```\n  indented fence\n  ```\nend", "item\nend"),
    ("Inline ```x = 1``` code.", "Inline code."),
    ("Start ```js\nlet x;\n```\nend", "Start\nend"),
    ("Text\n```\nnever closed. still code.", "Text"),
    # URLs
    ("Go to https://example.com/a/b?x=1&y=2#top now.", "Go to now."),
    ("Visit http://example.org.", "Visit."),
    ("(see https://example.com/page)", "(see)"),
    ("See www.example.com, then rest.", "See, then rest."),
    ("詳細はhttps://example.jp/ページ を見て", "詳細はページ を見て"),
    ("Awww. That's sweet.", "Awww. That's sweet."),
    ("HTTPS://EXAMPLE.COM/X shouting", "shouting"),
    # HTML
    ("<b>bold</b> and <i>it</i><br/>next<p>para</p>", "bold and it next para"),
    ("<div class=\"x\">Hi</div>", "Hi"),
    ("<joy>Not a tag</joy>", "Not a tag"),
    ("1 < 2 and x<3", "1 < 2 and x<3"),
    # emoji and pictographs
    ("Great job 👍🏽🎉! ✨Nice✨", "Great job! Nice"),
    ("家族👨‍👩‍👧と旅行🇯🇵", "家族と旅行"),
    ("大好き♡♪☆", "大好き"),
    ("Press 1️⃣ now", "Press 1 now"),
    # punctuation and whitespace
    ("Wow!!! Really??? No way?!?!", "Wow! Really? No way?!"),
    ("えっ！！！本当？？？。。。", "えっ！本当？。"),
    ("Well...... okay,,, fine", "Well... okay, fine"),
    ("さて…………", "さて……"),
    ("  spaced \t  out\u3000text  ", "spaced out text"),
    ("zero\u200bwidth", "zerowidth"),
    ("end ( ) here「」", "end here"),
    # tags
    ("[joy] Hello [wink] there ［sad］", "Hello there"),
    ("unclosed [jo", "unclosed"),
    ("unclosed [with spaces inside", "unclosed with spaces inside"),
    ("a [very long bracketed remark that never ends at all] b", "a very long bracketed remark that never ends at all b"),
    ("[[joy]] double", "double"),
    ("stray ] closer", "stray closer"),
    # things that must stay
    ("3.14 and 2.0.1 and e.g. Mr. Smith", "3.14 and 2.0.1 and e.g. Mr. Smith"),
    ("-5度、C++、50%", "-5度、C++、50%"),
    ("2024年12月31日", "2024年12月31日"),
])
def test_clean_for_speech(raw: str, spoken: str) -> None:
    assert clean_for_speech(raw, TAGS) == spoken


def _fed_in_chunks(text: str, size: int) -> list[str | ExpressionTag]:
    cleaner = SpeechCleaner(TAGS)
    pieces: list[str | ExpressionTag] = []
    for start in range(0, len(text), size):
        pieces += cleaner.feed(text[start:start + size])
    pieces += cleaner.flush()
    merged: list[str | ExpressionTag] = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        else:
            merged.append(piece)
    return merged


def test_the_cleaner_gives_the_same_text_and_tags_in_any_chunking() -> None:
    text = ("# Title\n[joy]Hello **there** https://x.org/a.b. [wink]\n```\ncode\n```\n| a | b |\n"
            "- [docs](http://y.z) ［SAD］ <b>x</b> 😊 snake_case `c` ~~s~~ [unclosed")
    whole = _fed_in_chunks(text, len(text))
    assert ExpressionTag("joy") in whole and ExpressionTag("sad") in whole
    for size in (1, 2, 3, 5, 8):
        assert _fed_in_chunks(text, size) == whole


def test_the_cleaner_holds_back_what_is_not_decided_yet() -> None:
    cleaner = SpeechCleaner(TAGS)
    assert cleaner.feed("ok [jo") == ["ok "]
    assert cleaner.feed("y]") == []  # "(" would still make it a link
    assert cleaner.feed(" go") == [ExpressionTag("joy"), " go"]
    assert cleaner.feed("\n``") == ["\n"]  # may open a fence
    assert cleaner.feed("`\nsecret\n") == []
    assert cleaner.feed("```\nback") == ["back"]


def test_a_link_whose_text_is_a_tag_is_still_a_tag() -> None:
    cleaner = SpeechCleaner(TAGS)
    assert cleaner.feed("[joy](smiling) hi") + cleaner.flush() == [ExpressionTag("joy"), "(smiling) hi"]


def test_tidy_leaves_nothing_when_nothing_is_speakable() -> None:
    assert tidy_spoken(" 、。！？…… ") == ""
    assert tidy_spoken("」、はい") == "はい"


def test_pictographs_are_recognised() -> None:
    assert all(is_pictograph(ch) for ch in "😊🎉♪☆⭐✨❤\ufe0f")
    assert not any(is_pictograph(ch) for ch in "aあ漢。!、１①○→%")


def test_expression_vocabulary_matches_loosely_and_names_as_configured() -> None:
    vocabulary = ExpressionVocabulary(["Joy", "sad"])
    assert vocabulary.match(" JOY ") == "Joy"
    assert vocabulary.match("ｓａｄ") == "sad"
    assert vocabulary.match("wink") is None
    assert "joy" in vocabulary and "wink" not in vocabulary
    assert vocabulary.names == ("Joy", "sad")
