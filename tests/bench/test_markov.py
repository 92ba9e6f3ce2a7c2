"""The Markov baseline of bench/bench_books.py: a proper distribution, finite perplexity."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bench.markov import KneserNeyMarkov
from model import Vocabulary, tokenize
from model.windows import gather, split_indices

CORPORA = Path(__file__).resolve().parents[2] / "data" / "corpora"


def _windows(ids: list[int], n_input: int) -> tuple[list[list[int]], list[int]]:
    return [ids[i : i + n_input] for i in range(len(ids) - n_input)], ids[n_input:]


def test_hand_computed_bigram_probabilities() -> None:
    # "a b a b a b": bigrams a->b x3, b->a x2; vocabulary of 3 (c never seen).
    contexts, targets = _windows([0, 1, 0, 1, 0, 1], 1)
    chain = KneserNeyMarkov(order=1, vocab_size=3).fit(contexts, targets)
    # Unigram level: continuation counts a:1, b:1 (n1=2, n2=0 -> D clamped to 0.95), + uniform.
    p_unigram_ab = (1 - 0.95) / 2 + 0.95 * 2 / 2 / 3
    p_unigram_c = 0.95 * 2 / 2 / 3
    # Bigram level after "a": b seen 3 times (no count of 1 -> default D = 0.75).
    assert chain.probability([0], 1) == pytest.approx((3 - 0.75) / 3 + 0.75 / 3 * p_unigram_ab)
    assert chain.probability([0], 2) == pytest.approx(0.75 / 3 * p_unigram_c)
    # An unseen context backs off to the unigram level entirely.
    assert chain.probability([2], 2) == pytest.approx(p_unigram_c)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_every_distribution_sums_to_one_and_matches_probability(order: int) -> None:
    tokens = tokenize((CORPORA.parent / "belling-the-cat.txt").read_text(encoding="utf-8"))
    vocabulary = Vocabulary.build(tokens)
    ids = vocabulary.encode(tokens)
    contexts, targets = _windows(ids, 3)
    chain = KneserNeyMarkov(order=order, vocab_size=len(vocabulary)).fit(contexts, targets)
    unseen = [len(vocabulary) - 1] * 3  # the rarest word three times: a context never seen
    for context in [*contexts[:40], unseen]:
        dist = chain.distribution(context)
        assert dist.shape == (len(vocabulary),)
        assert float(dist.sum()) == pytest.approx(1.0, abs=1e-9)
        assert float(dist.min()) > 0.0
        for target in (0, ids[5], len(vocabulary) - 1):
            assert chain.probability(context, target) == pytest.approx(float(dist[target]))


def test_held_out_perplexity_is_finite_and_beats_uniform() -> None:
    tokens = tokenize((CORPORA / "fables-of-aesop-jacobs.txt").read_text(encoding="utf-8"))
    tokens = tokens[:6000]
    vocabulary = Vocabulary.build(tokens)
    ids = np.asarray(vocabulary.encode(tokens), dtype=np.int32)
    train_idx, val_idx = split_indices(len(ids) - 3, 0.1, 3)
    x_train, y_train = gather(ids, train_idx, 3)
    x_val, y_val = gather(ids, val_idx, 3)
    train_set = set(y_train.tolist())
    assert any(int(y) not in train_set for y in y_val), "held-out text should have unseen words"

    scores = {}
    for order in (2, 3):
        chain = KneserNeyMarkov(order=order, vocab_size=len(vocabulary))
        chain.fit(x_train.tolist(), y_train.tolist())
        scores[order] = chain.score(x_val.tolist(), y_val.tolist())
    for score in scores.values():
        assert score.windows == len(val_idx)
        assert math.isfinite(score.perplexity)
        # Far better than guessing uniformly, far worse than knowing the text.
        assert 20.0 < score.perplexity < 0.3 * len(vocabulary)
        assert 0.05 < score.accuracy < 0.5
        assert score.perplexity == pytest.approx(math.exp(score.cross_entropy))
    # On 5k words of training text a longer context overfits a little, never by much.
    assert scores[3].perplexity == pytest.approx(scores[2].perplexity, rel=0.25)
