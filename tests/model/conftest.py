from __future__ import annotations

import os
from pathlib import Path

import pytest

from model import TrainedModel

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CORPORA = Path(__file__).resolve().parents[2] / "data" / "corpora"
ARTICLE_PREFIX = [
    "council",
    "to",
    "consider",
    "what",
    "measures",
    "they",
    "could",
    "take",
    "to",
    "outwit",
    "their",
    "common",
    "enemy",
    ",",
    "the",
    "cat",
    ".",
]


def jacobs_fable() -> str:
    """The raw fable "Belling the Cat" cut from Jacobs' book (title to the next title)."""
    text = (CORPORA / "fables-of-aesop-jacobs.txt").read_text(encoding="utf-8")
    start = text.index("Long ago, the mice had a general council")
    end = text.index("The Hare and the Tortoise", start)
    return text[start:end]


@pytest.fixture(scope="session")
def story_text() -> str:
    return (CORPORA.parent / "belling-the-cat.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def story_tokens(story_text: str) -> list[str]:
    from model import tokenize

    return tokenize(story_text)


@pytest.fixture(scope="session")
def tiny_model(story_tokens: list[str]) -> TrainedModel:
    """A small model trained on the article's story (shared by several tests)."""
    from model import TrainingConfig
    from model.training import train_model

    return train_model(
        story_tokens, {"units": 32, "embedding_dim": 16}, TrainingConfig(seed=3, learning_rate=3e-2)
    )


def four_grams(tokens: list[str]) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + 4]) for i in range(len(tokens) - 3)}
