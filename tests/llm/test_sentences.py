"""SpokenTextStream: Japanese and English sentences as soon as they are complete, tags, limits, any chunking."""

from __future__ import annotations

import random
import re

import pytest

from assistant.llm.cleaning import is_pictograph
from assistant.llm.sentences import ExpressionTag, Sentence, SpokenTextStream, split_sentences
from assistant.text import guess_language

TAGS = ["joy", "sad", "surprised", "thinking"]


def texts(items: list[Sentence | ExpressionTag]) -> list[str]:
    return [item.text for item in items if isinstance(item, Sentence)]


def streamed(text: str, seed: int = 0, **limits: int) -> list[Sentence | ExpressionTag]:
    """Feeds ``text`` 1-3 characters at a time, as a model streams tokens."""
    rng = random.Random(seed)
    stream = SpokenTextStream(TAGS, **limits)
    out: list[Sentence | ExpressionTag] = []
    index = 0
    while index < len(text):
        size = rng.randint(1, 3)
        out += stream.feed(text[index:index + size])
        index += size
    return out + stream.flush()


# -------------------------------------------------------------------------------------------- Japanese


def test_japanese_sentences_split_at_terminators() -> None:
    reply = "こんにちは。今日はいい天気ですね！散歩に行きませんか？"
    assert texts(split_sentences(reply)) == ["こんにちは。", "今日はいい天気ですね！", "散歩に行きませんか？"]


def test_a_japanese_full_stop_hands_the_sentence_on_at_once() -> None:
    stream = SpokenTextStream(TAGS)
    assert stream.feed("こんにちは") == []
    assert stream.feed("。") == [Sentence("こんにちは。", "ja")]


def test_an_exclamation_waits_one_character_for_what_belongs_to_it() -> None:
    stream = SpokenTextStream(TAGS)
    assert stream.feed("えっ！") == []
    assert stream.feed("？") == []
    assert texts(stream.feed("本当")) == ["えっ！？"]
    assert texts(stream.flush()) == ["本当"]


@pytest.mark.parametrize(("reply", "expected"), [
    ("「ありがとう。」また明日ね。", ["「ありがとう。」", "また明日ね。"]),
    ("『星の王子さま』を読んだ？うん！", ["『星の王子さま』を読んだ？", "うん！"]),
    ("「本当？」と聞いた。", ["「本当？」と聞いた。"]),
    ("えっと……そうですね…。わかりました。", ["えっと……そうですね…。", "わかりました。"]),
    ("すごい！？やったー！", ["すごい！？", "やったー！"]),
    ("（笑）楽しいね。", ["（笑）楽しいね。"]),
    ("すごい!次は何?", ["すごい!", "次は何?"]),
    ("３．１４は円周率です。", ["３．１４は円周率です。"]),
    ("半角の句点｡次の文｡", ["半角の句点｡", "次の文｡"]),
    ("はい。。。そうです。", ["はい。", "そうです。"]),
])
def test_japanese_closers_and_marks_belong_to_their_sentence(reply: str, expected: list[str]) -> None:
    assert texts(split_sentences(reply)) == expected
    assert texts(streamed(reply)) == expected


def test_line_breaks_end_sentences() -> None:
    assert texts(split_sentences("一行目\n二行目\n\n\nThird line\n")) == ["一行目", "二行目", "Third line"]


# --------------------------------------------------------------------------------------------- English


def test_english_sentences_split_at_terminators_followed_by_space() -> None:
    reply = "Hello there! How are you? I'm fine. Thanks"
    assert texts(split_sentences(reply)) == ["Hello there!", "How are you?", "I'm fine.", "Thanks"]


def test_an_english_sentence_ends_when_the_space_arrives() -> None:
    stream = SpokenTextStream(TAGS)
    assert stream.feed("Hello.") == []
    assert stream.feed(" ") == [Sentence("Hello.", "en")]


@pytest.mark.parametrize(("reply", "expected"), [
    ("Pi is about 3.14 here. Yes.", ["Pi is about 3.14 here.", "Yes."]),
    ("Fruit, e.g. apples, are good. Yes.", ["Fruit, e.g. apples, are good.", "Yes."]),
    ("Use one, i.e. the first. Yes.", ["Use one, i.e. the first.", "Yes."]),
    ("Mr. Smith met Mrs. Jones and Dr. Lee. Yes.", ["Mr. Smith met Mrs. Jones and Dr. Lee.", "Yes."]),
    ("Pens, paper, etc. are here. Yes.", ["Pens, paper, etc. are here.", "Yes."]),
    ("The U.S. economy grew. Yes.", ["The U.S. economy grew.", "Yes."]),
    ("Version 2.0.1 is out. Python 3.11. Yes.", ["Version 2.0.1 is out.", "Python 3.11.", "Yes."]),
    ("Well... I think so. Yes.", ["Well... I think so.", "Yes."]),
    ("I wonder... Maybe.", ["I wonder... Maybe."]),
    ("It costs $1.50. Cheap!", ["It costs $1.50.", "Cheap!"]),
    ("He said \"hi.\" Then he left.", ["He said \"hi.\"", "Then he left."]),
    ("(It was late.) We slept.", ["(It was late.)", "We slept."]),
    ("Really?! Wow!!! OK.", ["Really?!", "Wow!", "OK."]),
    ("Hello.World is one word.", ["Hello.World is one word."]),
    ("J. R. R. Tolkien wrote it. At 5 p.m. we left.", ["J. R. R. Tolkien wrote it.", "At 5 p.m. we left."]),
    ("OK!では始めます。", ["OK!", "では始めます。"]),
])
def test_english_edge_cases(reply: str, expected: list[str]) -> None:
    assert texts(split_sentences(reply)) == expected
    assert texts(streamed(reply, seed=7)) == expected


def test_urls_are_never_split_nor_spoken() -> None:
    reply = "Read https://example.com/docs/v1.2/index.html?x=1.5&y=2 today. It helps."
    assert texts(split_sentences(reply)) == ["Read today.", "It helps."]
    japanese = "詳しくは https://example.jp/a.b.c を見てね。www.example.org もどうぞ。"
    assert texts(split_sentences(japanese)) == ["詳しくは を見てね。", "もどうぞ。"]


# ------------------------------------------------------------------------------------------ first clause


def test_a_long_first_clause_is_cut_at_a_japanese_comma() -> None:
    reply = "今日は本当にいろいろなことがあって少し疲れましたけど、とても楽しかったです。明日は朝から雨が降るそうなので、傘を持っていきます。"
    assert texts(split_sentences(reply)) == [
        "今日は本当にいろいろなことがあって少し疲れましたけど、", "とても楽しかったです。",
        "明日は朝から雨が降るそうなので、傘を持っていきます。"]


def test_the_first_clause_cut_comes_as_soon_as_the_comma_does() -> None:
    stream = SpokenTextStream(TAGS, first_clause_chars=10)
    assert stream.feed("それはとても良い質問ですね") == []
    assert texts(stream.feed("、少し")) == ["それはとても良い質問ですね、"]


def test_a_short_first_clause_is_not_cut() -> None:
    assert texts(split_sentences("はい、わかりました。")) == ["はい、わかりました。"]
    assert texts(split_sentences("Well, I see.")) == ["Well, I see."]


def test_a_long_english_first_clause_is_cut_at_comma_space_but_not_inside_numbers() -> None:
    reply = "I paid 1,000 yen for the cake yesterday, which was a lot, honestly. Then, well, I ate it."
    assert texts(split_sentences(reply)) == [
        "I paid 1,000 yen for the cake yesterday,", "which was a lot, honestly.", "Then, well, I ate it."]


@pytest.mark.parametrize(("reply", "expected"), [
    ("こんばんは、今日もお疲れ様、ゆっくり休んでね。", ["こんばんは、", "今日もお疲れ様、ゆっくり休んでね。"]),
    ("ゆっくり休んで、明日に備えようね。", ["ゆっくり休んで、", "明日に備えようね。"]),
    ("少し疲れちゃったけど楽しい一日だったね。明日も頑張ろう。", ["少し疲れちゃったけど", "楽しい一日だったね。", "明日も頑張ろう。"]),
    ("ちょっと疲れたから今日は早めに寝ようかな。", ["ちょっと疲れたから", "今日は早めに寝ようかな。"]),
    ("今日は一日中ずっと家でゆっくり過ごしていました。", ["今日は一日中ずっと家で", "ゆっくり過ごしていました。"]),
    ("あなたの好きな食べ物を教えてくれたら嬉しいな。", ["あなたの好きな食べ物を", "教えてくれたら嬉しいな。"]),
    ("Good evening, how was your day today? Tell me.", ["Good evening,", "how was your day today?", "Tell me."]),
    ("I'm so glad you had a nice day because you really deserve it. Sleep well.",
     ["I'm so glad you had a nice day", "because you really deserve it.", "Sleep well."]),
    ("Mr. Smith met Mrs. Jones and Dr. Lee at the station when the rain started.",
     ["Mr. Smith met Mrs. Jones and Dr. Lee at the station", "when the rain started."]),
])
def test_a_long_first_sentence_starts_with_a_short_clause_and_later_ones_stay_whole(
        reply: str, expected: list[str]) -> None:
    assert texts(split_sentences(reply)) == expected
    assert texts(streamed(reply, seed=3)) == expected


@pytest.mark.parametrize("reply", [
    "こんばんは、元気？", "はい、わかりました。", "お疲れさまでした。", "うん、今日は楽しかった。", "Well, I see.",
    "Oh, that is nice!", "今日はいい天気だね。",
])
def test_a_first_sentence_that_is_already_short_is_not_cut(reply: str) -> None:
    assert texts(split_sentences(reply)) == [reply]


@pytest.mark.parametrize("reply", [
    "道が曲がるところで止まってください。", "猫を優しく撫でるのが好きなんだよね。", "それはとても素敵なことだと思いますよ。",
    "それはとても良い質問ですね。", "料理をもっと上手に勉強できるといいな。",
    "今日の天気予報によると明日は晴れるらしいよ。", "Something wonderful happened to me yesterday evening.",
])
def test_the_first_clause_is_never_cut_inside_a_word(reply: str) -> None:
    parts = texts(split_sentences(reply))
    assert "".join(parts).replace(" ", "") == reply.replace(" ", "")
    assert all(len(part) >= 4 for part in parts), parts  # never a clipped fragment
    for word in ("曲がる", "撫でる", "素敵な", "天気予報", "晴れる", "ですね", "できる", "wonderful", "yesterday"):
        if word in reply:
            assert any(word in part for part in parts), (word, parts)


def test_a_cut_between_words_waits_so_a_sentence_ending_there_stays_whole() -> None:
    stream = SpokenTextStream(TAGS)
    assert stream.feed("今日は一日中ずっと家で") == []
    assert stream.feed("ゆっく") == []  # the rest might still be too short to stand alone
    assert texts(stream.feed("り")) == ["今日は一日中ずっと家で"]
    assert texts(stream.feed("休もう。")) == ["ゆっくり休もう。"]


def test_the_first_clause_cut_can_be_turned_off() -> None:
    reply = "今日は本当にいろいろなことがあって少し疲れましたけど、楽しかったです。"
    assert texts(split_sentences(reply, first_clause_chars=0)) == [reply]


# ------------------------------------------------------------------------------------------------ limits


def test_a_long_english_sentence_is_cut_at_spaces_within_the_limit() -> None:
    words = [f"word{i}" for i in range(60)]
    sentences = texts(streamed(" ".join(words) + ".", max_sentence_chars=40))
    assert len(sentences) > 5
    assert all(len(sentence) <= 40 for sentence in sentences)
    assert " ".join(sentences).rstrip(".").split() == words


def test_a_long_japanese_sentence_is_cut_after_a_comma() -> None:
    clause = "あいうえおかきくけこ、"
    sentences = texts(split_sentences(clause * 6 + "おわり。", max_sentence_chars=25, first_clause_chars=0))
    assert sentences == [clause * 2] * 3 + ["おわり。"]


def test_a_sentence_with_nowhere_to_cut_is_cut_hard_at_the_limit() -> None:
    sentences = texts(split_sentences("あ" * 100, max_sentence_chars=30))
    assert sentences == ["あ" * 30] * 3 + ["あ" * 10]


def test_an_endless_sentence_is_bounded_and_exhausts_the_reply() -> None:
    stream = SpokenTextStream(TAGS, max_sentence_chars=120, max_reply_chars=400)
    out: list[Sentence | ExpressionTag] = []
    tokens = 0
    while not stream.is_exhausted:
        out += stream.feed("これは終わらない文章のテストで")
        tokens += 1
        assert tokens < 100, "the stream never said it was exhausted"
    assert stream.feed("まだ続く。") == []
    assert stream.flush() == []
    spoken = texts(out)
    assert all(0 < len(sentence) <= 120 for sentence in spoken)
    assert sum(map(len, spoken)) <= 400
    assert stream.spoken_chars == sum(map(len, spoken))


def test_an_endless_reply_stops_at_max_reply_chars_on_a_sentence_boundary() -> None:
    stream = SpokenTextStream(TAGS, max_reply_chars=200)
    out: list[Sentence | ExpressionTag] = []
    tokens = 0
    while not stream.is_exhausted:
        out += stream.feed("This is one more sentence. ")
        tokens += 1
        assert tokens < 100
    spoken = texts(out)
    assert 150 < sum(map(len, spoken)) <= 200
    assert set(spoken) == {"This is one more sentence."}


def test_the_reply_limit_keeps_a_complete_clause() -> None:
    out = split_sentences("はい。" + "長い長い説明、" * 30, max_reply_chars=50)
    spoken = texts(out)
    assert spoken[0] == "はい。"
    assert sum(map(len, spoken)) <= 50
    assert all(sentence.endswith(("。", "、")) for sentence in spoken)


# -------------------------------------------------------------------------------------------------- tags


def test_expression_tags_come_out_in_stream_order_and_are_not_spoken() -> None:
    reply = "[joy]こんにちは！[sad]でも、今日はちょっと残念なお知らせがあります。[thinking]ええと。"
    for out in (split_sentences(reply, TAGS), streamed(reply)):
        assert out == [ExpressionTag("joy"), Sentence("こんにちは！", "ja"), ExpressionTag("sad"),
                       Sentence("でも、今日はちょっと残念なお知らせがあります。", "ja"),
                       ExpressionTag("thinking"), Sentence("ええと。", "ja")]


def test_a_tag_right_after_a_sentence_belongs_to_what_follows() -> None:
    assert split_sentences("Hello.[joy] Nice to see you.", TAGS) == [
        Sentence("Hello.", "en"), ExpressionTag("joy"), Sentence("Nice to see you.", "en")]


def test_a_tag_inside_a_sentence_comes_before_it() -> None:
    assert split_sentences("I am [joy] so happy.", TAGS) == [ExpressionTag("joy"), Sentence("I am so happy.", "en")]


def test_tags_match_ignoring_case_and_width_and_keep_the_configured_name() -> None:
    out = split_sentences("[JOY]あ。［Sad］い。[ surprised ]う。", TAGS)
    assert [item for item in out if isinstance(item, ExpressionTag)] == [
        ExpressionTag("joy"), ExpressionTag("sad"), ExpressionTag("surprised")]
    assert texts(out) == ["あ。", "い。", "う。"]


def test_angle_brackets_and_unknown_tags_are_not_expressions_and_not_spoken() -> None:
    out = split_sentences("<joy>Hi [wink] there [1]. (joy) stays.", TAGS)
    assert out == [Sentence("Hi there.", "en"), Sentence("(joy) stays.", "en")]


def test_an_unclosed_bracket_at_the_end_is_dropped() -> None:
    assert split_sentences("楽しかったね[jo", TAGS) == [Sentence("楽しかったね", "ja")]
    stream = SpokenTextStream(TAGS)
    assert stream.feed("Bye! [sur") == [Sentence("Bye!", "en")]
    assert stream.flush() == []


def test_a_bracket_open_too_long_is_literal_text_without_its_bracket() -> None:
    reply = "Here is [an aside that goes on and on without ever closing] the rest."
    assert texts(split_sentences(reply, TAGS)) == ["Here is an aside that goes on and on without ever closing the rest."]


def test_tags_after_the_reply_is_exhausted_are_ignored() -> None:
    stream = SpokenTextStream(TAGS, max_reply_chars=20)
    out = stream.feed("[joy]はい。" + "あ" * 30 + "[sad]")
    assert stream.is_exhausted
    assert out == [ExpressionTag("joy"), Sentence("はい。", "ja")]


# ------------------------------------------------------------------------------------- clean and bounded


def test_a_markdown_reply_becomes_clean_spoken_sentences() -> None:
    reply = (
        "## Summary 😊\n\n"
        "Here are **three** tips:\n"
        "1. Sleep *well*.\n"
        "2. Drink `water`.\n"
        "- See [the guide](https://example.com/guide) ✨\n\n"
        "```python\nprint('never spoken')\n```\n"
        "> Stay calm!!!\n"
        "| tip | when |\n|-----|------|\n| nap | noon |\n"
        "<br>Good luck 👍🏽!"
    )
    assert texts(streamed(reply)) == ["Summary", "Here are three tips:", "Sleep well.", "Drink water.",
                                      "See the guide", "Stay calm!", "tip, when", "nap, noon", "Good luck!"]


def test_a_code_block_holds_the_stream_back_and_is_never_spoken() -> None:
    stream = SpokenTextStream(TAGS)
    assert texts(stream.feed("コードです。\n```py\n")) == ["コードです。"]
    assert stream.feed("print('hi')\nx = 1. y = 2.\n") == []
    assert stream.feed("```\n") == []
    assert texts(stream.feed("以上です。")) == ["以上です。"]


def test_an_unclosed_code_block_is_dropped_to_the_end() -> None:
    assert texts(split_sentences("Try this:\n```\nrm -rf / now. Really.\n")) == ["Try this:"]


@pytest.mark.parametrize("reply", ["", "   \n\n ", "😊🎉👍🏽", "!!! ???", "```\ncode\n```", "[joy]", "---\n***", "<br>"])
def test_nothing_speakable_gives_no_sentence(reply: str) -> None:
    assert texts(split_sentences(reply, TAGS)) == []


def test_the_language_is_guessed_from_the_characters() -> None:
    assert guess_language("こんにちは") == "ja"
    assert guess_language("カタカナ") == "ja"
    assert guess_language("漢字") == "ja"
    assert guess_language("OK、わかった") == "ja"
    assert guess_language("Hello, world.") == "en"
    assert [item.language for item in split_sentences("Hi! やあ。", TAGS) if isinstance(item, Sentence)] == ["en", "ja"]


# ---------------------------------------------------------------------------------------------- chunking

_CORPUS = [
    "[joy]こんにちは！今日は何をしましたか？「散歩。」と言った。",
    "Mr. Smith paid $3.14, e.g. for a pen. The U.S. version 2.0.1 is out... really? Yes!",
    "# Title\n- **bold** item\n1. first\n```\ncode. here.\n```\nDone. See https://x.org/a.b?c=1. Or [docs](https://y.org) 😊!",
    "とても長い最初の文になりますが、気にしないでください、これはテストです。" * 3,
    "word " * 200,
    "あ" * 500,
    "| a | b |\n|---|---|\n| 1 | 2 |\n<b>bold</b> [wink] [sad] ［joy］ <joy> [never closed",
]

_TOKENS = [
    "Hello", "world", "Mr.", "3.14", "e.g.", "U.S.", "fine", "version 2.0.1", "こんにちは", "元気", "です", "ね",
    "。", "、", "！", "？", ". ", "! ", "? ", ", ", "...", "…", "」", "「", " ", " ", "[joy]", "[JOY]", "［sad］",
    "[wink]", "<b>", "</b>", "**", "_", "`x`", "\n```python\nSECRET_CODE()\n```\n", "https://example.com/p?q=1",
    "www.example.org", "[docs](https://example.com/d)", "😊", "👍🏽", "♪", "\n", "\n- ", "\n# ", "\n> ",
    "\n| a | b |\n", "<br>",
]


@pytest.mark.parametrize("reply", _CORPUS)
def test_feeding_one_to_three_characters_gives_what_feeding_it_whole_gives(reply: str) -> None:
    whole = split_sentences(reply, TAGS)
    assert whole
    for seed in range(3):
        assert streamed(reply, seed=seed) == whole


def test_random_replies_stream_the_same_and_stay_clean_and_bounded() -> None:
    rng = random.Random(2024)
    for _ in range(150):
        reply = "".join(rng.choice(_TOKENS) + rng.choice(["", " "]) for _ in range(rng.randint(0, 60)))
        whole = split_sentences(reply, TAGS, max_sentence_chars=40, max_reply_chars=150)
        assert streamed(reply, seed=rng.randint(0, 99), max_sentence_chars=40, max_reply_chars=150) == whole
        spoken = texts(whole)
        assert sum(map(len, spoken)) <= 150
        for sentence in spoken:
            assert sentence == sentence.strip() and 0 < len(sentence) <= 40
            assert not re.search(r"SECRET|https?|example\.|[\[\]［］*`]|<b>|</b>", sentence), (reply, sentence)
            assert not any(is_pictograph(ch) for ch in sentence), (reply, sentence)
        assert {item.name for item in whole if isinstance(item, ExpressionTag)} <= {"joy", "sad"}
