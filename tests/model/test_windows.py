"""Training windows: n_input symbols predict the next; the learnable mask, lazy batches and the
held-out split of long stories."""

from __future__ import annotations

import numpy as np

from model import Vocabulary
from model.windows import batches, learnable_mask, split_indices, window_count


def _ids(tokens: list[str]) -> np.ndarray:
    return np.asarray(Vocabulary.build(tokens).encode(tokens), dtype=np.int32)


def test_every_position_gives_one_window(story_tokens: list[str]) -> None:
    ids = _ids(story_tokens)
    for n_input in (1, 3, 4):
        got = list(batches(ids, n_input, np.arange(window_count(len(ids), n_input)), 64))
        x = np.concatenate([b[0] for b in got])
        y = np.concatenate([b[1] for b in got])
        assert x.shape == (len(ids) - n_input, n_input)
        assert list(x[5]) == list(ids[5 : 5 + n_input]) and y[5] == ids[5 + n_input]


def test_article_story_has_199_of_201_learnable(story_tokens: list[str]) -> None:
    ids = _ids(story_tokens)
    mask = learnable_mask(ids, 3)
    assert len(mask) == 201 and int(mask.sum()) == 199
    unlearnable = [story_tokens[i : i + 4] for i in np.flatnonzero(~mask)]
    assert unlearnable == [["the", "cat", ".", "by"], ["up", "and", "said", "that"]]


def test_batches_are_lazy_and_shuffled_reproducibly() -> None:
    ids = np.arange(122_000, dtype=np.int32) % 4884
    stream = batches(ids, 3, np.arange(len(ids) - 3), 1024, np.random.default_rng(1))
    x, y = next(stream)
    assert x.shape == (1024, 3) and x.dtype == np.int32 and y.shape == (1024,)
    again, _ = next(batches(ids, 3, np.arange(len(ids) - 3), 1024, np.random.default_rng(1)))
    assert np.array_equal(x, again)


def test_split_is_deterministic_disjoint_and_spread() -> None:
    train, val = split_indices(100_000, 0.1, 3)
    assert len(set(train) & set(val)) == 0 and len(train) + len(val) == 100_000
    assert 0.08 < len(val) / 100_000 < 0.12
    assert val.min() < 20_000 and val.max() > 80_000  # spread over the whole book
    assert np.array_equal(val, split_indices(100_000, 0.1, 3)[1])
