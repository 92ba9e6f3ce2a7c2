"""The tokenizer turns raw text into words and punctuation; the detokenizer joins them back."""

from __future__ import annotations

import pytest

from model import detokenize, tokenize
from model.tokenizer import PARAGRAPH
from tests.model.conftest import jacobs_fable


def test_article_story_has_204_symbols_112_unique(story_tokens: list[str]) -> None:
    assert len(story_tokens) == 204
    assert len(set(story_tokens)) == 112


def test_raw_jacobs_fable_gives_the_articles_words(story_tokens: list[str]) -> None:
    raw = tokenize(jacobs_fable())
    assert "“" in raw and "”" in raw and ";" in raw
    # The article dropped the quotes, the semicolon, the colons and the paragraph breaks.
    assert [s for s in raw if s not in {"“", "”", ";", ":", PARAGRAPH}] == story_tokens


def test_bom_crlf_and_case() -> None:
    text = "\ufeffThe Cat\r\nsat.\r\n"
    # No blank line in the text: each line is a paragraph; the final break is dropped.
    assert tokenize(text) == ["the", "cat", PARAGRAPH, "sat", "."]
    assert tokenize(text, lowercase=False) == ["The", "Cat", PARAGRAPH, "sat", "."]


def test_unicode_punctuation_quotes_dashes_ellipses() -> None:
    text = '“Don’t,” she said—quietly… ¿Qué? ¡Sí! It\'s "fine" -- really...'
    assert tokenize(text) == [
        "“", "don’t", ",", "”", "she", "said", "—", "quietly", "…",
        "¿", "qué", "?", "¡", "sí", "!", "it's", "“", "fine", "”", "—", "really", "…",
    ]  # fmt: skip


def test_inner_apostrophe_and_hyphen_stay_in_the_word() -> None:
    assert tokenize("The Ass’s Brains; the Cat-Maiden") == [
        "the", "ass’s", "brains", ";", "the", "cat-maiden",
    ]  # fmt: skip
    # A trailing apostrophe closes a quote instead.
    assert tokenize("the boys’ toys") == ["the", "boys", "’", "toys"]


def test_accents_numbers_and_italics_underscores() -> None:
    assert tokenize("Café naïve _very_ 3.5% of 1,000") == [
        "café", "naïve", "very", "3.5", "%", "of", "1,000",
    ]  # fmt: skip


def test_spaceless_scripts_fall_back_to_characters() -> None:
    assert tokenize("我爱你。日本語") == ["我", "爱", "你", "。", "日", "本", "語"]
    assert detokenize(tokenize("我爱你。日本語")) == "我爱你。日本語"


def test_detokenize_renders_prose() -> None:
    symbols = tokenize("“You will all agree,” said he; “that is — well… ¿no? (yes)!")
    assert detokenize(symbols) == "“you will all agree,” said he; “that is—well… ¿no? (yes)!"


def test_detokenize_roundtrips_the_raw_fable_words() -> None:
    raw = tokenize(jacobs_fable())
    assert tokenize(detokenize(raw)) == raw
    assert detokenize(raw).startswith("long ago, the mice had a general council")


def test_detokenize_straight_quotes_by_parity() -> None:
    assert detokenize(["he", "said", '"', "hi", '"', "."]) == 'he said "hi".'


def test_paragraph_breaks_blank_lines_or_one_paragraph_a_line() -> None:
    wrapped = "Belling the Cat\n\nLong ago, the mice\nhad a council.\n\n\nThe end.\n"
    assert tokenize(wrapped) == [
        "belling", "the", "cat", PARAGRAPH, "long", "ago", ",", "the", "mice", "had", "a",
        "council", ".", PARAGRAPH, "the", "end", ".",
    ]  # fmt: skip
    assert tokenize("one.\ntwo.") == ["one", ".", PARAGRAPH, "two", "."]
    assert PARAGRAPH not in tokenize("a one-line story.\n")


@pytest.mark.parametrize(
    "text",
    [
        # Spanish: ¿ ¡, dialogue dashes (spaced before, joined after) and a new paragraph.
        "El abuelo guardó silencio.\n—¿Por qué nunca hablas? —preguntó el niño.\n"
        "—¡Porque escucho! —dijo él—. Über alles.",
        # Chinese: no spaces around its punctuation and quotes.
        "他问爷爷：“爷爷，您为什么不说话呢？”老木匠笑了。\n“因为我在听。”",
        # Curly-quoted English with paragraph breaks and curly apostrophes, as written.
        "Belling the Cat\n“Don’t be afraid,” said the mouse. “Who’s there?” asked he—quietly.\n"
        "The mice’s plan… failed.",
    ],
)
def test_detokenize_round_trips_each_languages_typography(text: str) -> None:
    symbols = tokenize(text, lowercase=False)
    assert detokenize(symbols) == text
    assert tokenize(detokenize(tokenize(text))) == tokenize(text)


def test_either_apostrophe_finds_the_storys_word() -> None:
    from model import Vocabulary

    vocabulary = Vocabulary.build(tokenize("Don’t go. It's late."))
    assert vocabulary.encode(["don't", "it’s"]) == vocabulary.encode(["don’t", "it's"])
