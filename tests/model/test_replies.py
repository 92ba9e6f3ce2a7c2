"""Replies of a bot (issue 23): a channel's recent replies are not repeated (``avoid``), and a
story made of messages (paragraph symbols) gets replies that end at a message or sentence end,
each message on its own line, ``length`` an upper bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from model import GenerationOptions, TrainedModel, detokenize, generate, tokenize
from model.generation import PARAGRAPH, SENTENCE_END, whole_messages
from tests.model.conftest import ARTICLE_PREFIX, four_grams

CHAT = Path(__file__).resolve().parents[2] / "data" / "chat" / "chitchat-12k.txt"
GREEDY = GenerationOptions(temperature=0.0)


@pytest.fixture(scope="module")
def chat_model() -> TrainedModel:
    """A small model of the chat corpus's first 160 messages (one message a paragraph)."""
    from model import TrainingConfig
    from model.training import train_model

    messages = CHAT.read_text(encoding="utf-8").split("\n\n")[:160]
    tokens = tokenize("\n\n".join(messages))
    assert tokens.count(PARAGRAPH) == 159
    return train_model(
        tokens, {"units": 32, "embedding_dim": 16}, TrainingConfig(seed=3, max_epochs=40)
    )


@pytest.mark.parametrize(
    ("reply", "cut"),
    [
        (["hi", "\n", "how", "are", "you", "?", "i", "am"], 6),  # a sentence end, later
        (["yeah", "\n", "me", "too", "\n", "so", "what"], 4),  # the last message end
        (["she", "said", "“", "go", "!", "”", "and"], 6),  # a closing quote stays
        (["and", "then", "the", "cat"], 4),  # neither: as it is
        (["\n", "and", "then"], 3),  # a cut would leave no word: as it is
        (["ok", ".", "\n"], 2),
    ],
)
def test_whole_messages_cuts_at_the_last_message_or_sentence_end(
    reply: list[str], cut: int
) -> None:
    assert whole_messages(reply) == reply[:cut]


def test_a_reply_of_messages_ends_at_a_message_end_each_message_its_own_line(
    chat_model: TrainedModel,
) -> None:
    prompts = ["how are you doing", "i think", "what do you", "hello", "are you"]
    shaped_any = False
    for prompt in map(tokenize, prompts):
        for length in (8, 20, 40):
            options = GenerationOptions(length=length, temperature=0.0)
            raw = generate(
                chat_model, prompt, GenerationOptions(length=length, whole_messages=False)
            )
            reply = generate(chat_model, prompt, options)
            assert 0 < len(reply) <= length and reply == raw[: len(reply)]
            assert reply[-1] != PARAGRAPH
            ended = len(reply) == len(raw) or raw[len(reply)] == PARAGRAPH
            assert ended or reply[-1] in SENTENCE_END or reply[-1] in "”’»)", (prompt, reply)
            shaped_any = shaped_any or len(reply) < len(raw)
            lines = detokenize([*prompt, *reply]).split("\n")
            # The prompt's own line first, then one line a message.
            assert len(lines) == 1 + reply.count(PARAGRAPH)
            assert lines[0].startswith(detokenize(prompt))
    assert shaped_any  # some reply was cut at a message end


def test_a_story_without_paragraphs_keeps_its_length(tiny_model: TrainedModel) -> None:
    # The article's story: Listing 11 exact and whole 32-symbol replies, greedy.
    assert generate(tiny_model, ["had", "a", "general"], GREEDY)[:17] == ARTICLE_PREFIX
    assert len(generate(tiny_model, ["mouse", "mouse", "mouse"], GREEDY)) == 32


def test_avoided_replies_are_not_repeated(tiny_model: TrainedModel) -> None:
    prompt = ["had", "a", "general"]
    first = generate(tiny_model, prompt, GREEDY)
    second = generate(tiny_model, prompt, GREEDY, avoid=[first])
    third = generate(tiny_model, prompt, GREEDY, avoid=[first, second])
    assert not four_grams(second) & four_grams(first)
    assert not four_grams(third) & (four_grams(first) | four_grams(second))
    # Nothing to avoid: the article's greedy reply, whatever was said in other channels.
    assert generate(tiny_model, prompt, GREEDY, avoid=[]) == first


def test_avoided_words_the_vocabulary_lacks_are_ignored(tiny_model: TrainedModel) -> None:
    prompt = ["had", "a", "general"]
    first = generate(tiny_model, prompt, GREEDY)
    assert generate(tiny_model, prompt, GREEDY, avoid=[["zebra", "walrus", "purple", "x"]]) == first
